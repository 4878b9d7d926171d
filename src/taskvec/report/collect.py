"""Read every results file of a study into one structure the tables, figures and HTML share."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from taskvec import store
from taskvec.evaluate import TaskScores, score


@dataclasses.dataclass(frozen=True)
class TaskResult:
    model: str
    task: str
    category: str
    scores: TaskScores
    metadata: dict


@dataclasses.dataclass(frozen=True)
class StudyResults:
    results: tuple[TaskResult, ...]

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.results))

    def for_model(self, model: str) -> list[TaskResult]:
        return [r for r in self.results if r.model == model]

    def n_layers(self, model: str) -> int:
        return int(self.for_model(model)[0].metadata["n_layers"])

    def means(self, model: str) -> dict[str, float]:
        rows = self.for_model(model)
        return {key: float(np.mean([getattr(r.scores, key) for r in rows])) for key in ("baseline", "icl", "tv")}


def collect(paths: Sequence[Path]) -> StudyResults:
    """Results files are laid out as ``{model}/{task}.parquet``; order follows ``paths``."""
    results = []
    for path in paths:
        table = store.read_parquet(path, rebuild_hint="Rebuild it with `taskvec evaluate`.")
        metadata = store.parquet_metadata(table)
        task_meta = metadata["task"]
        results.append(TaskResult(path.parent.name, task_meta["task"], task_meta["category"], score(table), metadata))
    if not results:
        raise ValueError("no results files given")
    return StudyResults(tuple(results))
