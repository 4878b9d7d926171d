"""The methods table's text cells: the gap closed with its interval, and the one-off cost with its
backward part."""

from __future__ import annotations

from taskvec.report.page import interval_text


def gap_text(row: dict) -> str:
    if row["gap_closed"] is None:
        return ""
    if row["gap_closed_low"] is None:
        return f"{row['gap_closed']:.2f}"
    return f"{row['gap_closed']:.2f} " + interval_text((row["gap_closed_low"], row["gap_closed_high"]))


def one_off_text(row: dict) -> str:
    """The one-off cost, with the backward passes' positions beside the forward ones where there are any."""
    if row["one_off_cost"] is None:
        return ""
    backward = row.get("one_off_backward_cost") or 0.0
    return f"{row['one_off_cost']:.0f}" + (f" + {backward:.0f} bwd" if backward >= 0.5 else "")
