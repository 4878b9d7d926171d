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
from taskvec.analysis.stats import (
    ALPHA,
    PairedTest,
    floored_interval,
    holm,
    interval,
    mcnemar_exact,
    mean_and_spread,
    task_bootstrap,
    wilson_interval,
)
from taskvec.errors import ArtifactError, ConfigError
from taskvec.evaluate import TaskScores, read_results, score
from taskvec.loader import match_runs
from taskvec.prompts import Prompt, RunInfo, read_prompts

HOLDS = 0.75  # the task vector "holds" where it keeps at least this share of ICL accuracy
ICL_WORKS = 0.2  # the paper's filter: tasks where ICL beats the baseline by at least this much
METHODS = ("baseline", "icl", "tv")
STRICT = tuple(f"{m}_strict" for m in METHODS)  # the same methods under the strict metric
METRICS = METHODS + STRICT


@dataclasses.dataclass(frozen=True)
class Scores:
    """One (model, task) over its samplings of the splits: mean accuracies by the paper's first-token
    rule (``baseline``, ``icl``, ``tv``) and the strict metric (``*_strict``; NaN where not measured),
    95% Wilson intervals, spread over seeds, and the paired tests of the task vector against ICL."""

    baseline: float
    icl: float
    tv: float
    baseline_strict: float
    icl_strict: float
    tv_strict: float
    ci: dict[str, tuple[float, float]]
    spread: dict[str, float]
    best_layers: tuple[int, ...]
    # per sampling: whether any layer's dev accuracy beats the bare query (the baseline); where none
    # does, the layer is the tie rule's first, not a finding
    layers_work: tuple[bool, ...]
    dev_by_layer: list[float]
    n_baseline: int
    n_baseline_distinct: int  # distinct bare queries: the baseline's interval counts each once
    n_test: int
    tv_vs_icl: PairedTest
    tv_vs_icl_strict: PairedTest | None

    @property
    def best_layer(self) -> int:
        """The layer chosen most often over the samplings (ties: the first sampling's)."""
        counts = collections.Counter(self.best_layers)
        return max(self.best_layers, key=lambda layer: (counts[layer], -self.best_layers.index(layer)))

    @property
    def has_strict(self) -> bool:
        return bool(np.isfinite(self.icl_strict))


def _pooled(samples: Sequence[TaskScores], field: str) -> np.ndarray:
    return np.concatenate([np.asarray(getattr(s, field), dtype=bool) for s in samples])


def aggregate(samples: Sequence[TaskScores]) -> Scores:
    """Means over the samplings; Wilson intervals over the pooled test prompts (ICL, task vector) or
    the distinct bare queries (baseline: its queries repeat, and a query's prediction does not change)."""
    distinct = len({q for s in samples for q in s.baseline_queries}) or sum(s.n_baseline for s in samples)
    n_test = sum(s.n_test for s in samples)
    means = {m: mean_and_spread([getattr(s, m) for s in samples]) for m in METRICS}
    items = {"baseline": distinct, "icl": n_test, "tv": n_test}
    ci = {m: wilson_interval(means[m][0], items[m.removesuffix("_strict")]) for m in METRICS}
    strict_measured = all(s.icl_strict_correct and s.tv_strict_correct for s in samples)
    return Scores(
        **{m: means[m][0] for m in METRICS},
        ci=ci,
        spread={m: means[m][1] for m in METRICS},
        best_layers=tuple(s.best_layer for s in samples),
        layers_work=tuple(bool(s.dev_by_layer) and max(s.dev_by_layer) > s.baseline for s in samples),
        dev_by_layer=list(np.mean([s.dev_by_layer for s in samples], axis=0)),
        n_baseline=sum(s.n_baseline for s in samples),
        n_baseline_distinct=distinct,
        n_test=n_test,
        tv_vs_icl=mcnemar_exact(_pooled(samples, "tv_correct"), _pooled(samples, "icl_correct")),
        tv_vs_icl_strict=mcnemar_exact(_pooled(samples, "tv_strict_correct"), _pooled(samples, "icl_strict_correct"))
        if strict_measured
        else None,
    )


@dataclasses.dataclass(frozen=True)
class TaskResult:
    model: str
    task: str
    category: str
    scores: Scores
    samples: tuple[TaskScores, ...]
    seeds: tuple[int, ...]
    info: RunInfo  # of the first sampling
    p_holm: float = float("nan")  # tv_vs_icl's p-value, Holm-adjusted over every (model, task) of the study
    # on the first sampling: ICL's wrong predictions (``icl_errors``) and the task vector's strict failures
    # (``tv_strict``); None without prompts files
    diagnosis: dict | None = None

    @property
    def n_pairs(self) -> int:
        return self.info.n_pairs_usable

    @property
    def icl_works(self) -> bool:
        return self.scores.icl - self.scores.baseline >= ICL_WORKS

    @property
    def direction(self) -> str:
        """``above`` or ``below`` where the task vector differs from ICL after Holm's adjustment, else
        ``within noise``."""
        if not self.p_holm < ALPHA:
            return "within noise"
        return "above" if self.scores.tv > self.scores.icl else "below"

    @property
    def leading_space(self) -> bool:
        return self.info.leading_space

    @property
    def sources(self) -> str:
        return self.info.task.source_versions


def mean_scores(results: Sequence[TaskResult]) -> dict[str, float]:
    return {
        key: float(np.mean([getattr(r.scores, key) for r in results])) if results else float("nan") for key in METRICS
    }


def _ratio_interval(draws: dict[str, np.ndarray], tv: str, icl: str) -> tuple[float, float]:
    ratio = draws[tv] / np.where(draws[icl] == 0, np.nan, draws[icl])
    return interval(ratio[np.isfinite(ratio)]) if np.isfinite(ratio).any() else (float("nan"), float("nan"))


def mean_intervals(results: Sequence[TaskResult]) -> dict[str, tuple[float, float]]:
    """95% intervals of the mean accuracy over ``results`` and of the task vector's share of ICL
    accuracy, by the two-level bootstrap (tasks, then prompts within each task and sampling). They
    hold the layer chosen on dev fixed: the spread that the layer choice adds shows in the spread
    over split seeds. A mean's interval is never narrower than the Wilson interval of its prompts
    taken together (where every prompt agrees, as at an accuracy of 0, resampling sees no spread)."""
    if not results:
        return {}
    strict = all(r.scores.has_strict for r in results)
    tasks = []
    for r in results:
        groups = [
            {"baseline": _pooled(r.samples, "baseline_correct")},
            {"icl": _pooled(r.samples, "icl_correct"), "tv": _pooled(r.samples, "tv_correct")},
        ]
        if strict:
            groups += [
                {"baseline_strict": _pooled(r.samples, "baseline_strict_correct")},
                {
                    "icl_strict": _pooled(r.samples, "icl_strict_correct"),
                    "tv_strict": _pooled(r.samples, "tv_strict_correct"),
                },
            ]
        tasks.append(groups)
    draws = task_bootstrap(tasks)
    intervals = {}
    for metric, distribution in draws.items():
        if metric.startswith("baseline"):  # its draws repeat queries: count each distinct one once
            n = sum(r.scores.n_baseline_distinct for r in results)
        else:
            n = sum(len(group[metric]) for groups in tasks for group in groups if metric in group)
        mean = float(np.mean([getattr(r.scores, metric) for r in results]))
        intervals[metric] = floored_interval(distribution, mean, n)
    intervals["tv_over_icl"] = _ratio_interval(draws, "tv", "icl")
    if strict:
        intervals["tv_over_icl_strict"] = _ratio_interval(draws, "tv_strict", "icl_strict")
    return intervals


@dataclasses.dataclass(frozen=True)
class Analyses:
    """The analyses of one model (None where the study did not run one)."""

    conflicting: pa.Table | None = None
    robustness: pa.Table | None = None
    robustness_summary: dict | None = None
    vocabulary: pa.Table | None = None
    vocabulary_summary: dict | None = None  # the vocabulary criterion's judgement per layer kind
    # each extended study's result by its name (what the extended report's reader gave)
    extended: dict = dataclasses.field(default_factory=dict)


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

    def differs(self, task: str) -> str:
        """How ``task`` differs from the paper's version (source, size, format, filter)."""
        return next(r for r in self.results if r.task == task).info.task.differs

    def paper_task(self, task: str) -> str | None:
        """The paper's name for ``task`` (None for tasks the paper does not have)."""
        return next(r for r in self.results if r.task == task).info.task.paper_task

    def for_model(self, model: str) -> list[TaskResult]:
        return [r for r in self.results if r.model == model]

    def get(self, model: str, task: str) -> TaskResult | None:
        return next((r for r in self.results if r.model == model and r.task == task), None)

    def n_layers(self, model: str) -> int:
        return int(self.for_model(model)[0].info.n_layers)

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


def _read_analyses(paths: Sequence[Path], read_others=None) -> dict[str, Analyses]:
    """Analysis files of any number of models, each naming its model and analysis in its metadata. The
    files of other analyses (the extended studies') go to ``read_others`` where given: it takes
    ``{model: {analysis: (table, metadata)}}`` and returns ``{model: {name: result}}`` (or refuses)."""
    found: dict[str, dict] = collections.defaultdict(dict)
    others: dict[str, dict[str, tuple]] = collections.defaultdict(dict)
    for path in paths:
        table = store.read_parquet(path)
        metadata = store.parquet_metadata(table)
        model, kind = metadata.get("model_name"), metadata.get("analysis")
        if kind == "conflicting_tasks":
            found[model]["conflicting"] = table
        elif kind == "robustness":
            found[model]["robustness"] = table
            found[model]["robustness_summary"] = metadata["summary"]
        elif kind == "vocabulary":
            found[model]["vocabulary"] = table
            found[model]["vocabulary_summary"] = metadata.get("judgement")
        elif read_others is not None:
            others[model][kind] = (table, metadata)
        else:
            raise ArtifactError(
                f"{path}: not an analysis file of the study (conflicting_tasks, robustness, vocabulary)"
            )
    if others:
        for model, results in read_others(dict(others)).items():
            found[model]["extended"] = results
    return {model: Analyses(**fields) for model, fields in found.items()}


def icl_errors(results: pa.Table, prompts: Sequence[Prompt]) -> dict:
    """What ICL predicts where it is wrong on the test prompts of one results file (the first token):
    the most frequent wrong predictions, and how many repeat one of the prompt's demonstration
    answers or inputs, or the query itself."""
    by_index = {p.index: p for p in prompts if p.split == "test"}
    wrong = [
        (row["prediction"].strip(), by_index[row["index"]])
        for row in results.to_pylist()
        if row["method"] == "icl" and row["split"] == "test" and not row["correct"]
    ]
    # chance: a wrong token drawn at random from the task's answers (every answer its prompts show)
    answers = {a.strip() for p in prompts for a in (*p.answers, *(y for _, y in p.demonstrations))}

    def chance(shown) -> float:
        return round(sum(len({x.strip() for x in shown(p)} & answers) / len(answers) for _, p in wrong), 1)

    return {
        "n_test": len(by_index),
        "n_wrong": len(wrong),
        "most_frequent": collections.Counter(prediction for prediction, _ in wrong).most_common(3),
        "demonstration_answer": sum(pred in {y.strip() for _, y in p.demonstrations} for pred, p in wrong),
        "demonstration_input": sum(pred in {x.strip() for x, _ in p.demonstrations} for pred, p in wrong),
        "query": sum(pred == p.query.strip() for pred, p in wrong),
        "n_answers": len(answers),
        "chance_demonstration_answer": chance(lambda p: [y for _, y in p.demonstrations]) if answers else 0.0,
        "chance_demonstration_input": chance(lambda p: [x for x, _ in p.demonstrations]) if answers else 0.0,
    }


def strict_failures(results: pa.Table, prompts: Sequence[Prompt], scoring: str, method: str = "tv") -> dict:
    """On the test prompts of one results file: where ``method``'s first token is right by the paper's
    rule but its generation fails the strict metric, how often the generation starts with a valid answer
    and goes on instead of ending there (the answer, then more text before any separator). Under the
    ``exact`` rule (one-token answers) that holds by construction: the first token is then the whole
    answer; only ``prefix``-scored tasks test it."""
    by_index = {p.index: p for p in prompts if p.split == "test"}
    rows = [
        row
        for row in results.to_pylist()
        if row["method"] == method and row["split"] == "test" and row["correct"] and row["strict_correct"] is False
    ]
    goes_on = 0
    for row in rows:
        text = row["generated"].strip()
        goes_on += any(
            text.startswith(a.strip()) and len(text) > len(a.strip()) for a in by_index[row["index"]].strict_answers
        )
    return {"first_token_right_strict_wrong": len(rows), "answer_then_more": goes_on, "scoring": scoring}


def collect(
    paths: Sequence[Path], analysis_paths: Sequence[Path] = (), prompts_paths: Sequence[Path] = (), read_others=None
) -> StudyResults:
    """Results files of any number of models and tasks, each named by its metadata (the paths do not
    matter); order follows ``paths``. ``prompts_paths``, if given, are the prompts files of the same
    samplings, found by their metadata (for the diagnosis of ICL's errors on the first sampling).
    ``read_others`` reads analysis files of other kinds (:func:`_read_analyses`)."""
    kinds = {"results": paths, **({"prompts": prompts_paths} if prompts_paths else {})}
    grouped: dict[tuple[str, str], list[tuple[TaskScores, RunInfo]]] = {}
    errors: dict[tuple[str, str], dict] = {}
    for run in match_runs(kinds, one_model=False):
        table, info = read_results(run.results)
        key = (info.model_name, info.task.name)
        if prompts_paths and key not in errors:
            first_prompts = read_prompts(run.prompts)[0]
            errors[key] = {
                "icl_errors": icl_errors(table, first_prompts),
                "tv_strict": strict_failures(table, first_prompts, info.task.rules.scoring),
            }
        grouped.setdefault(key, []).append((score(table), info))
    if not grouped:
        raise ConfigError("no results files given")
    results = []
    for (model, task), samples in grouped.items():
        first = samples[0][1]
        results.append(
            TaskResult(
                model,
                task,
                first.task.category,
                aggregate([s for s, _ in samples]),
                tuple(s for s, _ in samples),
                tuple(m.seed for _, m in samples),
                first,
                diagnosis=errors.get((model, task)),
            )
        )
    adjusted = holm([r.scores.tv_vs_icl.p_value for r in results])
    results = [dataclasses.replace(r, p_holm=p) for r, p in zip(results, adjusted)]
    return StudyResults(tuple(results), _read_analyses(analysis_paths, read_others))
