"""The "How far the task vector travels" section's prompt formats: ICL, the bare query and the task
vector in each format, the format x format transfer matrix (theta of one format patched into the bare
query of another), what the bare query gives the layers above the patch, and sentences computed from
the numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from taskvec.analysis.stats import contrast_interval, floored_interval, task_bootstrap, wilson_interval
from taskvec.report.numbers import rounded

INTERVENTIONS = ("tv_own_layer", "bare_prefixed", "tv_prefixed")  # see taskvec.studies.formats.step


@dataclasses.dataclass(frozen=True)
class TaskFormats:
    task: str
    layer: int
    icl: dict[str, np.ndarray]  # target format -> correct[] on the test prompts (in index order)
    bare: dict[str, np.ndarray]  # the bare query, unpatched
    tv: dict[tuple[str, str], np.ndarray]  # (source, target) -> correct[]
    one_token: dict[str, np.ndarray]  # target -> whether an answer is one token as it writes it
    copies: dict[tuple[str, str], np.ndarray]  # (source, target) -> "input" / "query" / "" per prompt
    predictions: dict[tuple[str, str], np.ndarray]  # (source, target) -> tv predictions; ("", target) -> ICL's
    # the interventions, where the file has them: method ("tv_own_layer", "bare_prefixed", "tv_prefixed") ->
    # target -> correct[]; and each format's own dev layer
    extra: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    own_layers: dict[str, int] = dataclasses.field(default_factory=dict)

    def accuracy(self, method: str, target: str, source: str | None = None) -> float:
        return float(np.mean(self.values(method, target, source)))

    def values(self, method: str, target: str, source: str | None = None) -> np.ndarray:
        if method == "tv":
            return self.tv[(source or target, target)]
        return self.icl[target] if method == "icl" else self.bare[target]


@dataclasses.dataclass(frozen=True)
class Formats:
    model: str
    names: list[str]
    templates: dict[str, dict]  # name -> {demonstration, query, separator}
    tasks: dict[str, TaskFormats]
    query_tokens: dict[str, dict]  # task -> format -> {"tokens": [...], "around_input": [before, after]}
    query_prefix: str = ""  # the text before the bare query in the prefixed conditions
    # the study's own format(s), [demonstration, query, separator]: its own layer is the study's by construction
    study_formats: list = dataclasses.field(default_factory=list)
    _draws: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)  # tasks -> draws()

    def draws(self, tasks: list[str]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Per quantity (``icl:B``, ``bare:B``, ``tv:A:B``, ``own``, ``other``), the mean over ``tasks``
        and its two-level bootstrap distribution, all from the same resamples (prompts paired across
        quantities). ``own`` is theta in its own format averaged over the formats, ``other`` theta in
        the other formats' bare queries averaged over the ordered pairs. Computed once per set of tasks:
        the sentences, metrics, tables and page all read the same resamples."""
        key = tuple(tasks)
        if key not in self._draws:
            self._draws[key] = self._bootstrap(tasks)
        return self._draws[key]

    def _bootstrap(self, tasks: list[str]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        groups, means = [], {}
        for t in tasks:
            r = self.tasks[t]
            group = {f"icl:{b}": r.icl[b] for b in self.names} | {f"bare:{b}": r.bare[b] for b in self.names}
            group |= {f"tv:{a}:{b}": r.tv[(a, b)] for a in self.names for b in self.names}
            group |= {f"{m}:{b}": values for m, by in r.extra.items() for b, values in by.items()}
            group["own"] = np.mean([r.tv[(a, a)] for a in self.names], axis=0)
            others = [r.tv[(a, b)] for a in self.names for b in self.names if a != b]
            group["other"] = np.mean(others, axis=0) if others else group["own"]
            groups.append([group])
        draws = task_bootstrap(groups)
        for key in list(draws):
            means[key] = float(np.mean([np.mean(g[0][key]) for g in groups]))
            # the prompts behind the mean, for the interval's floor (see draw_interval)
            draws[f"n:{key}"] = np.array(sum(len(g[0][key]) for g in groups))
        return means, draws

    def input_first(self) -> list[str]:
        """The formats whose bare query has no token before its input (none at all: the model reads the
        input at the first position), in every task's example query."""
        return [
            f
            for f in self.names
            if self.query_tokens and all(q[f]["around_input"][0] == 0 for q in self.query_tokens.values())
        ]


def read_formats(predictions: pa.Table, metadata: dict) -> Formats:
    data = predictions.to_pydict()
    columns = {name: np.array(values, dtype=object) for name, values in data.items()}
    names = [f["name"] for f in metadata["formats"]]
    per_task = {}
    for task in sorted(set(data["task"])):
        mine = columns["task"] == task

        def pick(method: str, target: str, source: str = "", column: str = "correct", mine=mine) -> np.ndarray:
            mask = mine & (columns["method"] == method) & (columns["target"] == target) & (columns["source"] == source)
            order = np.argsort(columns["index"][mask].astype(int), kind="stable")
            values = columns[column][np.flatnonzero(mask)[order]]
            return values.astype(bool) if column in ("correct", "one_token") else values.astype(str)

        per_task[task] = TaskFormats(
            task,
            int(metadata["layers"][task]),
            {b: pick("icl", b) for b in names},
            {b: pick("bare", b) for b in names},
            {(a, b): pick("tv", b, a) for a in names for b in names},
            {b: pick("icl", b, column="one_token") for b in names},
            {(a, b): pick("tv", b, a, column="copies") for a in names for b in names},
            {(a, b): pick("tv", b, a, column="prediction") for a in names for b in names}
            | {("", b): pick("icl", b, column="prediction") for b in names},
            {
                method: {b: pick(method, b, b if method.startswith("tv") else "") for b in names}
                for method in INTERVENTIONS
                if (columns["method"][mine] == method).any()
            },
            {b: int(c["layer"]) for b, c in metadata.get("own_layers", {}).get(task, {}).items()},
        )
    return Formats(
        str(metadata["model_name"]),
        names,
        {f["name"]: f for f in metadata["formats"]},
        per_task,
        dict(metadata.get("query_tokens", {})),
        str(metadata.get("query_prefix", "")),
        [list(f) for f in metadata.get("study_format", [])],
    )


def chosen_anew(result: Formats) -> list[str]:
    """The formats whose own layer is a choice of its own: not the study's format, whose dev prompts
    and layer choice are the study's."""
    t = result.templates
    return [
        b for b in result.names if [t[b]["demonstration"], t[b]["query"], t[b]["separator"]] not in result.study_formats
    ]


def draw_interval(draws: dict[str, np.ndarray], key: str) -> tuple[float, float]:
    """A mean's bootstrap interval, floored by the Wilson interval of its prompts taken together (as
    the main report's means; :func:`taskvec.analysis.stats.floored_interval`)."""
    return floored_interval(draws[key], float(np.mean(draws[key])), int(draws.get(f"n:{key}", 0)))


def with_ci(means: dict, draws: dict, key: str) -> str:
    lo, hi = draw_interval(draws, key)
    return f"{means[key]:.2f} [{lo:.2f}, {hi:.2f}]"


# the paired contrasts of the formats study, one family for Bonferroni's adjustment: theta in another
# format's bare query against its own; each format's own layer against the study's; the prefixed bare query
# against the plain one
# own against other formats, the own layer, the prefix where the input is first, the bare query there, and
# the prefix elsewhere
FORMAT_CONTRASTS = 5


def contrast(means: dict, draws: dict, high: list[str], low: list[str]) -> tuple[float, float, float]:
    """The mean over the formats of ``high[i] - low[i]`` (keys of ``draws``), paired, with its
    Bonferroni-adjusted interval over :data:`FORMAT_CONTRASTS`."""
    difference = np.mean([draws[h] - draws[lo] for h, lo in zip(high, low)], axis=0)
    mean = float(np.mean([means[h] - means[lo] for h, lo in zip(high, low)]))
    return (mean, *contrast_interval(difference, FORMAT_CONTRASTS))


def copy_shares(result: Formats, tasks: list[str], target: str) -> tuple[int, float, float]:
    """Of the task vector's wrong predictions in ``target``'s bare query (theta of its own format), over
    ``tasks``: how many there are, and the share that copy the query's input and another of its tokens."""
    copied = np.concatenate(
        [result.tasks[t].copies[(target, target)][~result.tasks[t].tv[(target, target)]] for t in tasks]
    )
    if copied.size == 0:
        return 0, float("nan"), float("nan")
    return int(copied.size), float(np.mean(copied == "input")), float(np.mean(copied == "query"))


def sameness(result: Formats, tasks: list[str], target: str, method: str = "tv") -> float:
    """How often one prediction repeats across a task's queries in ``target`` (theta of its own format,
    or ICL): the share of the task's most common prediction, averaged over ``tasks``. A task vector the
    layers above cannot join to the input gives the same answer whatever the input."""
    source = target if method == "tv" else ""
    shares = []
    for t in tasks:
        predictions = result.tasks[t].predictions[(source, target)]
        _, counts = np.unique(predictions, return_counts=True)
        shares.append(counts.max() / predictions.size if predictions.size else float("nan"))
    return float(np.mean(shares))


def identical_targets(result: Formats) -> list[list[str]]:
    """Groups of formats (two or more) whose bare queries give the same task-vector prediction for
    every query of every task, with theta from every format: theta replaces the last token's stream, so
    bare queries that differ only in that token cannot differ once patched."""
    groups: list[list[str]] = []
    for b in result.names:
        for group in groups:
            first = group[0]
            if all(
                np.array_equal(r.predictions[(a, b)], r.predictions[(a, first)])
                for r in result.tasks.values()
                for a in result.names
            ):
                group.append(b)
                break
        else:
            groups.append([b])
    return [g for g in groups if len(g) > 1]


def copy_shares_over(result: Formats, tasks: list[str], targets: list[str]) -> tuple[int, float, float]:
    """:func:`copy_shares` pooled over several formats."""
    counts = [copy_shares(result, tasks, b) for b in targets]
    n = sum(c[0] for c in counts)
    if n == 0:
        return 0, float("nan"), float("nan")
    return (
        n,
        sum(c[0] * c[1] for c in counts if c[0]) / n,
        sum(c[0] * c[2] for c in counts if c[0]) / n,
    )


def task_metrics(result: Formats) -> dict[str, dict]:
    """Per task, for metrics.json: ICL, the bare query and the task vector (own format) per format, and
    the transfer matrix (``tv_transfer``: source -> target), each accuracy with its Wilson interval."""
    out = {}
    for task, r in result.tasks.items():
        entry = {}
        for method in ("icl", "bare", "tv"):
            entry[f"{method}_by_format"] = {b: rounded(r.accuracy(method, b)) for b in result.names}
            entry[f"{method}_by_format_ci"] = {
                b: [rounded(v) for v in wilson_interval(r.accuracy(method, b), len(r.values(method, b)))]
                for b in result.names
            }
        entry["tv_transfer"] = {a: {b: rounded(r.accuracy("tv", b, a)) for b in result.names} for a in result.names}
        out[task] = entry
    return out


def model_metrics(result: Formats, kept: list[str]) -> dict:
    out: dict = {"n_tasks": len(kept), "layer": "chosen on dev in the study's format, one per task"}
    out["formats"] = {b: dict(result.templates[b]) for b in result.names}
    if not kept:
        return out
    means, draws = result.draws(kept)

    def cell(key: str) -> dict:
        lo, hi = draw_interval(draws, key)
        return {"mean": rounded(means[key]), "ci": [rounded(lo), rounded(hi)]}

    first = result.input_first()
    for b in result.names:
        n, to_input, to_query = copy_shares(result, kept, b)
        out["formats"][b] |= {
            "icl": cell(f"icl:{b}"),
            "bare": cell(f"bare:{b}"),
            "tv": cell(f"tv:{b}:{b}"),
            "input_first": b in first,
            "answer_one_token": rounded(np.mean(np.concatenate([result.tasks[t].one_token[b] for t in kept]))),
            "tv_wrong": n,
            "tv_wrong_copies_input": rounded(to_input),
            "tv_wrong_copies_query": rounded(to_query),
        }
    out["transfer"] = {a: {b: cell(f"tv:{a}:{b}") for b in result.names} for a in result.names}
    out["tv_own"], out["tv_other"] = cell("own"), cell("other")
    d, lo, hi = contrast(means, draws, ["other"], ["own"])
    out["tv_other_minus_own"] = {"mean": rounded(d), "ci": [rounded(lo), rounded(hi)]}
    tasks = [result.tasks[t] for t in kept]
    for method in INTERVENTIONS:
        if all(method in r.extra for r in tasks):
            for b in result.names:
                out["formats"][b][method] = cell(f"{method}:{b}")
    if all("tv_own_layer" in r.extra for r in tasks):
        d, lo, hi = contrast(
            means, draws, [f"tv_own_layer:{b}" for b in result.names], [f"tv:{b}:{b}" for b in result.names]
        )
        out["tv_own_layer_minus_study_layer"] = {"mean": rounded(d), "ci": [rounded(lo), rounded(hi)]}
    if all("tv_prefixed" in r.extra for r in tasks):
        targets = result.input_first() or result.names
        d, lo, hi = contrast(means, draws, [f"tv_prefixed:{b}" for b in targets], [f"tv:{b}:{b}" for b in targets])
        out["query_prefix"] = result.query_prefix
        out["tv_prefixed_minus_plain"] = {"formats": targets, "mean": rounded(d), "ci": [rounded(lo), rounded(hi)]}
    out["contrast_intervals"] = f"paired bootstrap, Bonferroni-adjusted over {FORMAT_CONTRASTS} contrasts"
    return out
