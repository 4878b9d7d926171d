"""The published accuracies of Hendel, Geva and Globerson (2023), complete-results table
(7 models x 18 tasks), carried in ``paper_results.csv`` to compare against."""

from __future__ import annotations

import csv
import functools
import io
import re
from importlib import resources

import numpy as np

CITATION = (
    "Hendel, Geva and Globerson. In-Context Learning Creates Task Vectors. Findings of EMNLP 2023, "
    "complete-results table"
)


@functools.cache
def paper_results() -> dict[str, dict[str, dict[str, float]]]:
    """task -> model -> {"baseline", "icl", "tv"}."""
    text = resources.files("taskvec.report").joinpath("paper_results.csv").read_text()
    results: dict[str, dict[str, dict[str, float]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        results.setdefault(row["task"], {})[row["model"]] = {
            "baseline": float(row["baseline"]),
            "icl": float(row["icl"]),
            "tv": float(row["task_vector"]),
        }
    return results


def paper_mean(task: str) -> dict[str, float] | None:
    """The mean over the paper's models for ``task``, or None if the paper has no such task."""
    by_model = paper_results().get(task)
    if not by_model:
        return None
    return {key: float(np.mean([r[key] for r in by_model.values()])) for key in ("baseline", "icl", "tv")}


def paper_models() -> list[str]:
    return sorted({model for by_model in paper_results().values() for model in by_model})


def paper_size_range() -> str:
    """The range of the paper's model sizes, read from their names (``Pythia 2.8B``): "2.8B to 30B"."""
    sizes = [float(m.group(1)) for name in paper_models() if (m := re.search(r"(\d+(?:\.\d+)?)B\b", name))]
    return f"{min(sizes):g}B to {max(sizes):g}B" if sizes else "unknown size"
