"""Read every results and analysis file of a study into one structure the tables, figures and HTML
share, with the statistics of each accuracy."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from taskvec import store
from taskvec.analysis.stats import PairedTest, interval, mcnemar_exact, mean_and_spread, paired_bootstrap
from taskvec.evaluate import TaskScores, score

ICL_WORKS = 0.2  # the paper's filter: tasks where ICL beats the baseline by at least this much
METHODS = ("baseline", "icl", "tv")


@dataclasses.dataclass(frozen=True)
class Scores:
    """One (model, task) over its samplings of the splits: means, 95% intervals, spread over seeds,
    and the paired test of the task vector against ICL."""

    baseline: float
    icl: float
    tv: float
    ci: dict[str, tuple[float, float]]
    spread: dict[str, float]
    best_layers: tuple[int, ...]
    dev_by_layer: list[float]
    n_baseline: int
    n_test: int
    tv_vs_icl: PairedTest

    @property
    def best_layer(self) -> int:
        """The layer chosen most often over the samplings (ties: the first sampling's)."""
        counts = collections.Counter(self.best_layers)
        return max(self.best_layers, key=lambda layer: (counts[layer], -self.best_layers.index(layer)))


def aggregate(samples: Sequence[TaskScores]) -> Scores:
    baseline = paired_bootstrap([{"baseline": np.array(s.baseline_correct)} for s in samples])["baseline"]
    test = paired_bootstrap([{"icl": np.array(s.icl_correct), "tv": np.array(s.tv_correct)} for s in samples])
    draws = {"baseline": baseline, **test}
    means = {m: mean_and_spread([getattr(s, m) for s in samples]) for m in METHODS}
    return Scores(
        baseline=means["baseline"][0], icl=means["icl"][0], tv=means["tv"][0],
        ci={m: interval(draws[m]) for m in METHODS},
        spread={m: means[m][1] for m in METHODS},
        best_layers=tuple(s.best_layer for s in samples),
        dev_by_layer=list(np.mean([s.dev_by_layer for s in samples], axis=0)),
        n_baseline=sum(s.n_baseline for s in samples),
        n_test=sum(s.n_test for s in samples),
        tv_vs_icl=mcnemar_exact(np.concatenate([s.tv_correct for s in samples]),
                                np.concatenate([s.icl_correct for s in samples])),
    )


@dataclasses.dataclass(frozen=True)
class TaskResult:
    model: str
    task: str
    category: str
    scores: Scores
    samples: tuple[TaskScores, ...]
    seeds: tuple[int, ...]
    metadata: dict  # of the first sampling

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
            for key in METHODS}


def mean_intervals(results: Sequence[TaskResult]) -> dict[str, tuple[float, float]]:
    """95% intervals of the mean accuracy over ``results`` (prompts resampled within every task and
    sampling), and of the task vector's share of ICL accuracy."""
    if not results:
        return {}
    test = paired_bootstrap([{"icl": np.array(s.icl_correct), "tv": np.array(s.tv_correct)}
                             for r in results for s in r.samples])
    baseline = paired_bootstrap([{"baseline": np.array(s.baseline_correct)} for r in results for s in r.samples])
    ratio = test["tv"] / np.where(test["icl"] == 0, np.nan, test["icl"])
    return {"baseline": interval(baseline["baseline"]), "icl": interval(test["icl"]), "tv": interval(test["tv"]),
            "tv_over_icl": interval(ratio[np.isfinite(ratio)]) if np.isfinite(ratio).any() else (np.nan, np.nan)}


@dataclasses.dataclass(frozen=True)
class Analyses:
    """The analyses of one model (None where the study did not run one)."""

    conflicting: pa.Table | None = None
    robustness: pa.Table | None = None
    robustness_summary: dict | None = None
    vocabulary: pa.Table | None = None


@dataclasses.dataclass(frozen=True)
class StudyResults:
    results: tuple[TaskResult, ...]
    analyses: dict[str, Analyses] = dataclasses.field(default_factory=dict)

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

    def icl_works_results(self, model: str) -> list[TaskResult]:
        return [r for r in self.for_model(model) if r.icl_works]

    def icl_works_means(self, model: str) -> tuple[int, dict[str, float]]:
        """How many tasks pass the paper's filter (ICL beats the baseline by 0.2), and their means."""
        kept = self.icl_works_results(model)
        return len(kept), mean_scores(kept)

    def analysis(self, model: str) -> Analyses:
        return self.analyses.get(model, Analyses())


def _read_analyses(paths: Sequence[Path]) -> dict[str, Analyses]:
    """Analysis files are laid out as ``{model}/{analysis}.parquet``."""
    found: dict[str, dict] = collections.defaultdict(dict)
    for path in paths:
        table = store.read_parquet(path)
        model = path.parent.name
        if path.stem == "conflicting_tasks":
            found[model]["conflicting"] = table
        elif path.stem == "robustness":
            found[model]["robustness"] = table
            found[model]["robustness_summary"] = store.parquet_metadata(table)["summary"]
        elif path.stem == "vocabulary":
            found[model]["vocabulary"] = table
        else:
            raise ValueError(f"{path}: not an analysis file (conflicting_tasks, robustness or vocabulary)")
    return {model: Analyses(**fields) for model, fields in found.items()}


def collect(paths: Sequence[Path], analysis_paths: Sequence[Path] = ()) -> StudyResults:
    """Results files are laid out as ``{model}/{task}/{sample}.parquet``; order follows ``paths``."""
    grouped: dict[tuple[str, str], list[tuple[TaskScores, dict]]] = {}
    for path in paths:
        table = store.read_parquet(path, rebuild_hint="outside a study, `taskvec run-task` makes it")
        metadata = store.parquet_metadata(table)
        grouped.setdefault((path.parent.parent.name, metadata["task"]["task"]), []).append((score(table), metadata))
    if not grouped:
        raise ValueError("no results files given")
    results = []
    for (model, task), samples in grouped.items():
        first = samples[0][1]
        results.append(TaskResult(model, task, first["task"]["category"], aggregate([s for s, _ in samples]),
                                  tuple(s for s, _ in samples), tuple(int(m["seed"]) for _, m in samples), first))
    return StudyResults(tuple(results), _read_analyses(analysis_paths))
