"""How the reports write numbers: rounded for metrics.json and the tables, and as text in sentences.
Every report module takes these from here, so that one number is written the same way everywhere."""

from __future__ import annotations

DIGITS = 4  # decimals kept in metrics.json and the CSV tables


def rounded(value: float | None) -> float | None:
    """A metric as stored: rounded to DIGITS decimals; None where there is no value (None or NaN)."""
    if value is None or value != value:  # NaN of any float type
        return None
    return round(float(value), DIGITS)


def signed(value: float) -> str:
    """A difference with its sign, to two decimals, or three where two would round it to zero (so that
    an interval whose bound is just above 0 does not print as +0.00)."""
    return f"{value:+.2f}" if round(value, 2) != 0 or value == 0 else f"{value:+.3f}"


def spoken_list(items: list[str]) -> str:
    """Names as a sentence writes them: "a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
