"""The "How far the task vector travels" section's prompt formats: ICL, the bare query and the task
vector in each format, the format x format transfer matrix (theta of one format patched into the bare
query of another), what the bare query gives the layers above the patch, and sentences computed from
the numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from taskvec.analysis.stats import contrast_interval, floored_interval, interval, task_bootstrap, wilson_interval

INTERVENTIONS = ("tv_own_layer", "bare_prefixed", "tv_prefixed")  # see taskvec.analysis.formats


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
    )


def rounded(value: float) -> float | None:
    return round(float(value), 4) if value == value else None


def _signed(value: float) -> str:
    return f"{value:+.2f}" if round(value, 2) != 0 or value == 0 else f"{value:+.3f}"


def draw_interval(draws: dict[str, np.ndarray], key: str) -> tuple[float, float]:
    """A mean's bootstrap interval, floored by the Wilson interval of its prompts taken together (as
    the main report's means; :func:`taskvec.analysis.stats.floored_interval`)."""
    return floored_interval(draws[key], float(np.mean(draws[key])), int(draws.get(f"n:{key}", 0)))


def with_ci(means: dict, draws: dict, key: str) -> str:
    lo, hi = draw_interval(draws, key)
    return f"{means[key]:.2f} [{lo:.2f}, {hi:.2f}]"


def _group(means: dict, draws: dict, keys: list[str]) -> str:
    """The mean of several quantities (each a mean over tasks) with its interval, from the same resamples."""
    lo, hi = interval(np.mean([draws[k] for k in keys], axis=0))
    return f"{np.mean([means[k] for k in keys]):.2f} [{lo:.2f}, {hi:.2f}]"


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _extremes(values: dict[str, float], shown=None) -> tuple[list[str], list[str]]:
    """The names with the lowest and with the highest value: all of them where several tie, and with
    ``shown`` (how a value is written) all whose values are written alike (95.3% and 95.1% are both 95%:
    the text cannot rank them, so it names both)."""
    low, high = min(values.values()), max(values.values())
    if shown is None:
        return [k for k, v in values.items() if np.isclose(v, low)], [
            k for k, v in values.items() if np.isclose(v, high)
        ]
    return [k for k, v in values.items() if shown(v) == shown(low)], [
        k for k, v in values.items() if shown(v) == shown(high)
    ]


# the paired contrasts of the formats study, one family for Bonferroni's adjustment: theta in another
# format's bare query against its own; each format's own layer against the study's; the prefixed bare query
# against the plain one
FORMAT_CONTRASTS = 3


def _contrast(means: dict, draws: dict, high: list[str], low: list[str]) -> tuple[float, float, float]:
    """The mean over the formats of ``high[i] - low[i]`` (keys of ``draws``), paired, with its
    Bonferroni-adjusted interval over :data:`FORMAT_CONTRASTS`."""
    difference = np.mean([draws[h] - draws[lo] for h, lo in zip(high, low)], axis=0)
    mean = float(np.mean([means[h] - means[lo] for h, lo in zip(high, low)]))
    return (mean, *contrast_interval(difference, FORMAT_CONTRASTS))


def _verdict(lo: float, hi: float) -> str:
    return "significantly" if lo > 0 or hi < 0 else "not significantly"


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


def _tasks(n: int) -> str:
    return f"the {n} tasks" if n != 1 else "the one task"


def summary_sentences(result: Formats, kept: list[str]) -> list[str]:
    """Sentences computed from the numbers, over the tasks where ICL works: how ICL and the task vector
    fare in each format, how well theta carries to another format, and what in the bare query goes with
    the task vector's collapse."""
    if not kept:
        return ["ICL beats the baseline by 0.2 on none of the tasks, so no mean is given."]
    means, draws = result.draws(kept)
    names = result.names
    icl = {b: means[f"icl:{b}"] for b in names}
    tv = {b: means[f"tv:{b}:{b}"] for b in names}
    sentences = []
    if len(names) == 1:
        b = names[0]
        return [
            f"Over {_tasks(len(kept))} where ICL works, in the one format ({b}) ICL reaches "
            f"{with_ci(means, draws, f'icl:{b}')} and the task vector {with_ci(means, draws, f'tv:{b}:{b}')}."
        ]
    (icl_low, icl_high), (tv_low, tv_high) = _extremes(icl, "{:.2f}".format), _extremes(tv, "{:.2f}".format)

    def spread(low: list[str], high: list[str], key) -> str:
        if low == high:  # every format ties
            return f"{with_ci(means, draws, key(low[0]))} in every format"
        return (
            f"from {with_ci(means, draws, key(low[0]))} ({_names(low)}) to {with_ci(means, draws, key(high[0]))} "
            f"({_names(high)})"
        )

    sentences.append(
        f"Over {_tasks(len(kept))} where ICL works, ICL ranges over the {len(names)} formats "
        f"{spread(icl_low, icl_high, lambda b: f'icl:{b}')}, and the task vector, patched into its own format's "
        f"bare query, {spread(tv_low, tv_high, lambda b: f'tv:{b}:{b}')}."
    )
    shares = {b: tv[b] / icl[b] for b in names if icl[b] > 0}
    if shares:
        worst, best = _extremes(shares, "{:.0%}".format)
        tie = " each, a tie at this precision" if len(best) > 1 else ""
        sentences.append(
            f"At the study's layer (chosen on dev in the study's own format), the task vector keeps the most of "
            f"ICL's accuracy in {_names(best)} ({shares[best[0]]:.0%}{tie}) and the least in {_names(worst)} "
            f"({shares[worst[0]]:.0%}: {tv[worst[0]]:.2f} against {icl[worst[0]]:.2f})."
        )
    difference, lo, hi = _contrast(means, draws, ["other"], ["own"])
    verdict = (
        "it loses accuracy significantly"
        if hi < 0
        else "it gains accuracy significantly"
        if lo > 0
        else "the difference is not significant"
    )
    sentences.append(
        f"Carried into another format's bare query, theta reaches {with_ci(means, draws, 'other')} on average, "
        f"against {with_ci(means, draws, 'own')} in its own format ({_signed(difference)} [{_signed(lo)}, "
        f"{_signed(hi)}], paired on the same queries): {verdict}."
    )
    sentences += intervention_sentences(result, kept)
    rows = {a: float(np.mean([means[f"tv:{a}:{b}"] for b in names])) for a in names}
    cols = {b: float(np.mean([means[f"tv:{a}:{b}"] for a in names])) for b in names}
    row_range, col_range = max(rows.values()) - min(rows.values()), max(cols.values()) - min(cols.values())
    (col_low, col_high), (row_low, row_high) = _extremes(cols), _extremes(rows)
    which = (
        "more with the format of the bare query than with the format theta came from"
        if col_range > row_range
        else "more with the format theta came from than with the format of the bare query"
        if row_range > col_range
        else "as much with the format theta came from as with the format of the bare query"
    )

    def column(b: str) -> str:
        return _group(means, draws, [f"tv:{a}:{b}" for a in names])

    def row(a: str) -> str:
        return _group(means, draws, [f"tv:{a}:{b}" for b in names])

    sentences.append(
        f"The transfer matrix varies {which}: by bare query, its column means run from {column(col_low[0])} "
        f"({_names(col_low)}) to {column(col_high[0])} ({_names(col_high)}); by source, its row means from "
        f"{row(row_low[0])} ({_names(row_low)}) to {row(row_high[0])} ({_names(row_high)})."
    )
    for group in identical_targets(result):
        sentences.append(
            f"The bare queries of {_names(group)} give the same task-vector prediction for every query of every "
            "task, whichever format theta comes from: they differ only in the last token, which theta replaces, so "
            "after the patch the layers above see the same tokens before it and the same theta."
        )
    first = result.input_first()
    rest = [b for b in names if b not in first]
    if first and rest:
        n, to_input, _ = copy_shares_over(result, kept, first)
        copied = f"; {to_input:.0%} of its {n} wrong predictions there repeat the start of the input" if n else ""
        sentences.append(
            f"Where the bare query begins with its input ({_names(first)}: no token before it, so the input sits "
            f"at the first position), the task vector reaches {_group(means, draws, [f'tv:{b}:{b}' for b in first])} "
            f"against ICL's {_group(means, draws, [f'icl:{b}' for b in first])} in the same formats; where other "
            f"tokens come first ({_names(rest)}), {_group(means, draws, [f'tv:{b}:{b}' for b in rest])} against "
            f"{_group(means, draws, [f'icl:{b}' for b in rest])}{copied}."
        )
    elif rest and result.query_tokens:
        sentences.append(
            "In every format the bare query has at least one token before its input (this tokenizer's own "
            "special tokens count), so none puts the input at the first position."
        )
    weakest = tv_low[0]
    n, to_input, to_query = copy_shares(result, kept, weakest)
    copied = (
        f"; of its {n} wrong predictions there, {to_input:.0%} repeat the start of the query's input and "
        f"{to_query:.0%} another token of the bare query"
        if n
        else ""
    )
    sentences.append(
        f"In {weakest} (the task vector's weakest format) its most common prediction makes "
        f"{sameness(result, kept, weakest):.0%} of a task's predictions on average, against "
        f"{sameness(result, kept, weakest, 'icl'):.0%} for ICL in the same format{copied}."
    )
    one = {b: float(np.mean(np.concatenate([result.tasks[t].one_token[b] for t in kept]))) for b in names}
    few, most = _extremes(one)
    if not np.isclose(one[few[0]], one[most[0]]):
        sentences.append(
            f"As the formats write the answers after their queries, an answer is one token for {one[most[0]]:.0%} "
            f"of the queries in {_names(most)} down to {one[few[0]]:.0%} in {_names(few)} (the first-token rule "
            "still counts a prediction with the other spacing)."
        )
    return sentences


def intervention_sentences(result: Formats, kept: list[str]) -> list[str]:
    """What the two interventions show (where the file has them): each format at its own dev layer, and
    a neutral token before the bare query; each contrast paired on the same queries, Bonferroni-adjusted."""
    means, draws = result.draws(kept)
    names = result.names
    tasks = [result.tasks[t] for t in kept]
    sentences = []
    if all("tv_own_layer" in r.extra for r in tasks):
        moved = sum(r.own_layers.get(b) != r.layer for r in tasks for b in names)
        own = ", ".join(
            f"{b} {means[f'tv_own_layer:{b}']:.2f} (at the paper format's layer {means[f'tv:{b}:{b}']:.2f})"
            for b in names
        )
        d, lo, hi = _contrast(means, draws, [f"tv_own_layer:{b}" for b in names], [f"tv:{b}:{b}" for b in names])
        shares = {b: means[f"tv_own_layer:{b}"] / means[f"icl:{b}"] for b in names if means[f"icl:{b}"] > 0}
        _, best = _extremes(shares, "{:.0%}".format) if shares else ([], [])
        sentences.append(
            f"With each format's own layer, chosen on the dev prompts written in it ({moved} of the "
            f"{len(tasks) * len(names)} task and format choices differ from the paper format's layer), the task "
            f"vector reaches {own}; over the formats that changes it by {_signed(d)} [{_signed(lo)}, {_signed(hi)}], "
            f"{_verdict(lo, hi)}"
            + (
                f"; it then keeps the most of ICL's accuracy in {_names(best)} ({shares[best[0]]:.0%})."
                if best
                else "."
            )
        )
    if all("tv_prefixed" in r.extra for r in tasks):
        prefix = repr(result.query_prefix)
        first = result.input_first()
        targets = first or names
        tv = [f"tv:{b}:{b}" for b in targets]
        d, lo, hi = _contrast(means, draws, [f"tv_prefixed:{b}" for b in targets], tv)
        before = float(np.mean([means[k] for k in tv]))
        icl = float(np.mean([means[f"icl:{b}"] for b in targets]))
        recovered = f", {d / (icl - before):.0%} of its gap to ICL ({icl:.2f})" if icl - before > 0.05 else ""
        where = (
            f"in the formats whose bare query begins with its input ({_names(first)})"
            if first
            else "over the formats (each already has a token before its input)"
        )
        bare = _contrast(means, draws, [f"bare_prefixed:{b}" for b in targets], [f"bare:{b}" for b in targets])
        sentences.append(
            f"With {prefix} before the bare query, {where}, the task vector goes from {before:.2f} to "
            f"{before + d:.2f} ({_signed(d)} [{_signed(lo)}, {_signed(hi)}], {_verdict(lo, hi)}{recovered}); the "
            f"unpatched bare query changes by {_signed(bare[0])} [{_signed(bare[1])}, {_signed(bare[2])}]."
        )
        if first and [b for b in names if b not in first]:
            rest = [b for b in names if b not in first]
            d2, lo2, hi2 = _contrast(means, draws, [f"tv_prefixed:{b}" for b in rest], [f"tv:{b}:{b}" for b in rest])
            sentences.append(
                f"In the formats with tokens before the input ({_names(rest)}), the same prefix changes the task "
                f"vector by {_signed(d2)} [{_signed(lo2)}, {_signed(hi2)}], {_verdict(lo2, hi2)}."
            )
    return sentences


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
    d, lo, hi = _contrast(means, draws, ["other"], ["own"])
    out["tv_other_minus_own"] = {"mean": rounded(d), "ci": [rounded(lo), rounded(hi)]}
    tasks = [result.tasks[t] for t in kept]
    for method in INTERVENTIONS:
        if all(method in r.extra for r in tasks):
            for b in result.names:
                out["formats"][b][method] = cell(f"{method}:{b}")
    if all("tv_own_layer" in r.extra for r in tasks):
        d, lo, hi = _contrast(
            means, draws, [f"tv_own_layer:{b}" for b in result.names], [f"tv:{b}:{b}" for b in result.names]
        )
        out["tv_own_layer_minus_study_layer"] = {"mean": rounded(d), "ci": [rounded(lo), rounded(hi)]}
    if all("tv_prefixed" in r.extra for r in tasks):
        targets = result.input_first() or result.names
        d, lo, hi = _contrast(means, draws, [f"tv_prefixed:{b}" for b in targets], [f"tv:{b}:{b}" for b in targets])
        out["query_prefix"] = result.query_prefix
        out["tv_prefixed_minus_plain"] = {"formats": targets, "mean": rounded(d), "ci": [rounded(lo), rounded(hi)]}
    out["contrast_intervals"] = f"paired bootstrap, Bonferroni-adjusted over {FORMAT_CONTRASTS} contrasts"
    return out
