"""The paper's conflicting-task pairs and the summary of their results (free of model imports: the
workflow and the report read them)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

# (task A whose demonstrations are shown, task B whose theta is patched in)
PAIRS: tuple[tuple[str, str], ...] = (
    ("next_letter", "to_upper"),
    ("list_last", "list_first"),
    ("prev_letter", "next_letter"),
    ("present_simple_past_simple", "present_simple_gerund"),
    ("translation_en_es", "translation_en_fr"),
)


def pairs_in(tasks: Sequence[str]) -> list[tuple[str, str]]:
    """The paper's pairs whose two tasks are both in the study."""
    return [(a, b) for a, b in PAIRS if a in tasks and b in tasks]


def conflict_summary(table: pa.Table) -> dict[str, float]:
    """Accuracies of one pair's rows: against A over every prompt, against B over the prompts whose
    query B defines."""
    data = {name: np.array(table.column(name).to_pylist()) for name in table.column_names}
    known = data["b_defined"]

    def mean(values: np.ndarray) -> float:
        return float(values.mean()) if values.size else float("nan")

    return {
        "icl_a": mean(data["icl_correct_a"]),
        "icl_b": mean(data["icl_correct_b"][known]),
        "patched_a": mean(data["patched_correct_a"]),
        "patched_b": mean(data["patched_correct_b"][known]),
        "icl_strict_a": mean(data["icl_strict_a"]),
        "icl_strict_b": mean(data["icl_strict_b"][known]),
        "patched_strict_a": mean(data["patched_strict_a"]),
        "patched_strict_b": mean(data["patched_strict_b"][known]),
        "n": int(len(known)),
        "n_b_defined": int(known.sum()),
    }
