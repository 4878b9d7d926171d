"""The prompt-formats study in words: each sentence of the extended report's formats section computed
from the numbers of :mod:`taskvec.studies.formats.numbers` (how ICL and the task vector fare per format, how
theta carries between formats, and what the two interventions show)."""

from __future__ import annotations

import numpy as np

from taskvec.analysis.stats import interval
from taskvec.report.numbers import signed, spoken_list
from taskvec.studies.formats.numbers import (
    Formats,
    chosen_anew,
    contrast,
    copy_shares,
    copy_shares_over,
    identical_targets,
    sameness,
    with_ci,
)


def _group(means: dict, draws: dict, keys: list[str]) -> str:
    """The mean of several quantities (each a mean over tasks) with its interval, from the same resamples."""
    lo, hi = interval(np.mean([draws[k] for k in keys], axis=0))
    return f"{np.mean([means[k] for k in keys]):.2f} [{lo:.2f}, {hi:.2f}]"


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


def _verdict(lo: float, hi: float) -> str:
    return "significantly" if lo > 0 or hi < 0 else "not significantly"


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
            f"from {with_ci(means, draws, key(low[0]))} ({spoken_list(low)}) to {with_ci(means, draws, key(high[0]))} "
            f"({spoken_list(high)})"
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
            f"ICL's accuracy in {spoken_list(best)} ({shares[best[0]]:.0%}{tie}) and the least in {spoken_list(worst)} "
            f"({shares[worst[0]]:.0%}: {tv[worst[0]]:.2f} against {icl[worst[0]]:.2f})."
        )
    difference, lo, hi = contrast(means, draws, ["other"], ["own"])
    verdict = (
        "it loses accuracy significantly"
        if hi < 0
        else "it gains accuracy significantly"
        if lo > 0
        else "the difference is not significant"
    )
    sentences.append(
        f"Carried into another format's bare query, theta reaches {with_ci(means, draws, 'other')} on average, "
        f"against {with_ci(means, draws, 'own')} in its own format ({signed(difference)} [{signed(lo)}, "
        f"{signed(hi)}], paired on the same queries): {verdict}."
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
        f"({spoken_list(col_low)}) to {column(col_high[0])} ({spoken_list(col_high)}); by source, its row means from "
        f"{row(row_low[0])} ({spoken_list(row_low)}) to {row(row_high[0])} ({spoken_list(row_high)})."
    )
    for group in identical_targets(result):
        sentences.append(
            f"The bare queries of {spoken_list(group)} give the same task-vector prediction for every query of every "
            "task, whichever format theta comes from: they differ only in the last token, which theta replaces, so "
            "after the patch the layers above see the same tokens before it and the same theta."
        )
    first = result.input_first()
    rest = [b for b in names if b not in first]
    if first and rest:
        n, to_input, _ = copy_shares_over(result, kept, first)
        copied = f"; {to_input:.0%} of its {n} wrong predictions there repeat the start of the input" if n else ""
        sentences.append(
            f"Where the bare query begins with its input ({spoken_list(first)}: no token before it, so the input sits "
            f"at the first position), the task vector reaches {_group(means, draws, [f'tv:{b}:{b}' for b in first])} "
            f"against ICL's {_group(means, draws, [f'icl:{b}' for b in first])} in the same formats; where other "
            f"tokens come first ({spoken_list(rest)}), {_group(means, draws, [f'tv:{b}:{b}' for b in rest])} against "
            f"{_group(means, draws, [f'icl:{b}' for b in rest])}{copied}; format by format, the task vector "
            + ", ".join(f"{b} {means[f'tv:{b}:{b}']:.2f}" for b in names)
            + " (a group's mean can hide one format)."
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
            f"of the queries in {spoken_list(most)} down to {one[few[0]]:.0%} in {spoken_list(few)} "
            "(the first-token rule still counts a prediction with the other spacing)."
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
        anew = chosen_anew(result)
        moved = sum(r.own_layers.get(b) != r.layer for r in tasks for b in anew)
        own = ", ".join(
            f"{b} {means[f'tv_own_layer:{b}']:.2f} (at the paper format's layer {means[f'tv:{b}:{b}']:.2f})"
            for b in names
        )
        d, lo, hi = contrast(means, draws, [f"tv_own_layer:{b}" for b in names], [f"tv:{b}:{b}" for b in names])
        shares = {b: means[f"tv_own_layer:{b}"] / means[f"icl:{b}"] for b in names if means[f"icl:{b}"] > 0}
        _, best = _extremes(shares, "{:.0%}".format) if shares else ([], [])
        sentences.append(
            f"With each format's own layer, chosen on the dev prompts written in it ({moved} of the "
            f"{len(tasks) * len(anew)} task and format choices outside the study's own format differ from its "
            "layer), the task "
            f"vector reaches {own}; over the formats that changes it by {signed(d)} [{signed(lo)}, {signed(hi)}], "
            f"{_verdict(lo, hi)}"
            + (
                f"; it then keeps the most of ICL's accuracy in {spoken_list(best)} ({shares[best[0]]:.0%})."
                if best
                else "."
            )
        )
    if all("tv_prefixed" in r.extra for r in tasks):
        prefix = repr(result.query_prefix)
        first = result.input_first()
        targets = first or names
        tv = [f"tv:{b}:{b}" for b in targets]
        d, lo, hi = contrast(means, draws, [f"tv_prefixed:{b}" for b in targets], tv)
        before = float(np.mean([means[k] for k in tv]))
        icl = float(np.mean([means[f"icl:{b}"] for b in targets]))
        recovered = f", {d / (icl - before):.0%} of its gap to ICL ({icl:.2f})" if icl - before > 0.05 else ""
        where = (
            f"in the formats whose bare query begins with its input ({spoken_list(first)})"
            if first
            else "over the formats (each already has a token before its input)"
        )
        bare = contrast(means, draws, [f"bare_prefixed:{b}" for b in targets], [f"bare:{b}" for b in targets])
        sentences.append(
            f"With {prefix} before the bare query, {where}, the task vector goes from {before:.2f} to "
            f"{before + d:.2f} ({signed(d)} [{signed(lo)}, {signed(hi)}], {_verdict(lo, hi)}{recovered}); the "
            f"unpatched bare query changes by {signed(bare[0])} [{signed(bare[1])}, {signed(bare[2])}]."
        )
        if first and [b for b in names if b not in first]:
            rest = [b for b in names if b not in first]
            d2, lo2, hi2 = contrast(means, draws, [f"tv_prefixed:{b}" for b in rest], [f"tv:{b}:{b}" for b in rest])
            each = ", ".join(f"{b} {signed(means[f'tv_prefixed:{b}'] - means[f'tv:{b}:{b}'])}" for b in rest)
            sentences.append(
                f"In the formats with tokens before the input ({spoken_list(rest)}), the same prefix changes the task "
                f"vector by {signed(d2)} [{signed(lo2)}, {signed(hi2)}], {_verdict(lo2, hi2)}; format by format, "
                f"{each}."
            )
    return sentences
