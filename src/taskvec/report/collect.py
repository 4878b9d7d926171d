"""Read every results file of a study into one structure the tables, figures and HTML share."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from taskvec import store
from taskvec.evaluate import TaskScores, score

ICL_WORKS = 0.2  # the paper's filter: tasks where ICL beats the baseline by at least this much


@dataclasses.dataclass(frozen=True)
class TaskResult:
    model: str
    task: str
    category: str
    scores: TaskScores
    metadata: dict

    @property
    def n_pairs(self) -> int:
        return int(self.metadata["n_pairs_usable"])

    @property
    def icl_works(self) -> bool:
        return self.scores.icl - self.scores.baseline >= ICL_WORKS

    @property
    def sources(self) -> str:
        return ", ".join(f"{s['package']} {s['version']}" for s in self.metadata["task"]["sources"])


def mean_scores(results: Sequence[TaskResult]) -> dict[str, float]:
    return {key: float(np.mean([getattr(r.scores, key) for r in results])) if results else float("nan")
            for key in ("baseline", "icl", "tv")}


@dataclasses.dataclass(frozen=True)
class StudyResults:
    results: tuple[TaskResult, ...]

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.results))

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(r.task for r in self.results))

    def paper_task(self, task: str) -> str | None:
        """The paper's name for ``task`` (None for tasks the paper does not have)."""
        return next(r for r in self.results if r.task == task).metadata["task"].get("paper_task")

    def for_model(self, model: str) -> list[TaskResult]:
        return [r for r in self.results if r.model == model]

    def get(self, model: str, task: str) -> TaskResult | None:
        return next((r for r in self.results if r.model == model and r.task == task), None)

    def n_layers(self, model: str) -> int:
        return int(self.for_model(model)[0].metadata["n_layers"])

    def means(self, model: str) -> dict[str, float]:
        return mean_scores(self.for_model(model))

    def category_means(self, model: str) -> dict[str, dict[str, float]]:
        rows = self.for_model(model)
        categories = list(dict.fromkeys(r.category for r in rows))
        return {c: mean_scores([r for r in rows if r.category == c]) for c in categories}

    def icl_works_means(self, model: str) -> tuple[int, dict[str, float]]:
        """How many tasks pass the paper's filter (ICL beats the baseline by 0.2), and their means."""
        kept = [r for r in self.for_model(model) if r.icl_works]
        return len(kept), mean_scores(kept)


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
