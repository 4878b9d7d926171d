"""Task vectors against function vectors, the controls and the distribution gap: numbers, table rows,
sentences and figures from one model's ``function-vectors`` files (:mod:`taskvec.studies.function_vectors.step`).

Everything here is on the first sampling of each task's splits (its test prompts), so the task
vector's accuracy is this sampling's, not the mean over samplings of the main table.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
from scipy import stats as scipy_stats

from taskvec.analysis.stats import (
    ALPHA,
    PairedTest,
    floored_interval,
    holm,
    interval,
    mcnemar_exact,
    task_bootstrap,
    wilson_interval,
)
from taskvec.report.numbers import rounded
from taskvec.report.page import names_text

METHODS = ("tv", "fv", "shuffled_icl", "shuffled_icl_fv", "random_vector", "other_task_theta", "layer_average")
CONTROLS = ("random_vector", "other_task_theta", "layer_average")
LABELS = {
    "tv": "task vector (bare query + theta)",
    "fv": "function vector (bare query + FV)",
    "shuffled_icl": "ICL, shuffled labels",
    "shuffled_icl_fv": "ICL, shuffled labels + FV",
    "random_vector": "random vector, theta's norm",
    "other_task_theta": "another task's theta",
    "layer_average": "the task's mean theta",
}


@dataclasses.dataclass(frozen=True)
class TaskComparison:
    task: str
    tv_layer: int
    fv_layer: int
    correct: dict[str, np.ndarray]  # per method, per test prompt (in prompt order)
    kl: dict[str, float]  # mean KL(ICL || method) over test prompts, for tv and fv
    top1: dict[str, float]  # share of test prompts where the method's top token is ICL's
    curve: dict[int, float]  # FV accuracy on test by number of heads
    tv_vs_fv: PairedTest
    p_holm: float = 1.0

    def accuracy(self, method: str) -> float:
        return float(self.correct[method].mean())

    def ci(self, method: str) -> tuple[float, float]:
        return wilson_interval(self.accuracy(method), len(self.correct[method]))

    @property
    def direction(self) -> str:
        """``tv`` or ``fv`` where that one is significantly better (Holm-adjusted), else ``neither``."""
        if self.p_holm >= ALPHA:
            return "neither"
        return "tv" if self.tv_vs_fv.only_first > self.tv_vs_fv.only_second else "fv"


@dataclasses.dataclass(frozen=True)
class VectorComparison:
    """One model's comparison over its tasks."""

    model: str
    tasks: dict[str, TaskComparison]
    aie: np.ndarray  # [n_layers, n_heads]: mean over tasks of each head's average indirect effect
    task_aie: dict[str, np.ndarray]
    heads: list[tuple[int, int]]  # the function vector's heads (largest mean effect first)
    head_prompts: int

    @property
    def n_heads(self) -> int:
        return len(self.heads)

    def shared_heads(self) -> dict[tuple[int, int], int]:
        """For each of the function vector's heads: in how many tasks it is among that task's own top
        heads (as many as the function vector has)."""
        own = {}
        for task, aie in self.task_aie.items():
            flat = np.lexsort((np.arange(aie.size), -aie.reshape(-1)))[: self.n_heads]
            own[task] = {(int(i // aie.shape[1]), int(i % aie.shape[1])) for i in flat}
        return {head: sum(head in heads for heads in own.values()) for head in self.heads}


def read_comparison(predictions: pa.Table, heads: pa.Table, metadata: dict) -> VectorComparison:
    """The comparison from one model's predictions and heads tables."""
    data = predictions.to_pydict()
    columns = {name: np.array(values, dtype=object) for name, values in data.items()}
    tasks = sorted(set(data["task"]))
    n = int(metadata["n_heads"])
    per_task = {}
    for task in tasks:
        test = (columns["task"] == task) & (columns["split"] == "test")

        def rows(method: str, n_heads: int | None = None, test: np.ndarray = test) -> np.ndarray:
            mask = test & (columns["method"] == method)
            if n_heads is not None:
                mask &= columns["n_heads"] == n_heads
            order = np.argsort(columns["index"][mask].astype(int), kind="stable")
            return np.flatnonzero(mask)[order]

        correct = {m: columns["correct"][rows(m)].astype(bool) for m in METHODS}
        kl = {m: float(np.mean(columns["kl_from_icl"][rows(m)].astype(float))) for m in ("tv", "fv")}
        top1 = {m: float(np.mean(columns["agrees_with_icl"][rows(m)].astype(bool))) for m in ("tv", "fv")}
        curve = {n: float(correct["fv"].mean())}
        curve_mask = test & (columns["method"] == "fv_curve")
        for count in sorted(set(columns["n_heads"][curve_mask].astype(int))):
            curve[count] = float(columns["correct"][rows("fv_curve", count)].astype(bool).mean())
        per_task[task] = TaskComparison(
            task,
            int(columns["layer"][rows("tv")][0]),
            int(columns["layer"][rows("fv")][0]),
            correct,
            kl,
            top1,
            dict(sorted(curve.items())),
            mcnemar_exact(correct["tv"], correct["fv"]),
        )
    adjusted = holm([per_task[t].tv_vs_fv.p_value for t in tasks])
    per_task = {t: dataclasses.replace(per_task[t], p_holm=p) for t, p in zip(tasks, adjusted)}

    head_data = heads.to_pydict()
    n_layers, n_heads = max(head_data["layer"]) + 1, max(head_data["head"]) + 1
    task_aie = {}
    for task, layer, head, value in zip(head_data["task"], head_data["layer"], head_data["head"], head_data["aie"]):
        task_aie.setdefault(task, np.zeros((n_layers, n_heads)))[layer, head] = value
    mean_aie = np.mean([task_aie[t] for t in sorted(task_aie)], axis=0)
    return VectorComparison(
        str(metadata["model_name"]),
        per_task,
        mean_aie,
        task_aie,
        [tuple(h) for h in metadata["heads"]],
        int(metadata["head_prompts"]),
    )


def mean_with_interval(
    comparison: VectorComparison, tasks: list[str], method: str
) -> tuple[float, tuple[float, float]]:
    """Mean accuracy over ``tasks`` and its two-level bootstrap interval (tasks, then prompts), floored
    by the Wilson interval of the prompts taken together."""
    if not tasks:
        return float("nan"), (float("nan"), float("nan"))
    groups = [[{method: comparison.tasks[t].correct[method]}] for t in tasks]
    draws = task_bootstrap(groups)[method]
    mean = float(np.mean([comparison.tasks[t].accuracy(method) for t in tasks]))
    n = sum(len(comparison.tasks[t].correct[method]) for t in tasks)
    return mean, floored_interval(draws, mean, n)


def paired_difference(
    comparison: VectorComparison, tasks: list[str], first: str = "tv", second: str = "fv"
) -> tuple[float, tuple[float, float]]:
    """The mean over ``tasks`` of ``first``'s accuracy minus ``second``'s on the same test prompts, with
    its two-level bootstrap interval (each drawn prompt counts for both methods): the test of which is
    better, where two marginal intervals overlapping would test nothing."""
    if not tasks:
        return float("nan"), (float("nan"), float("nan"))
    groups = [[{m: comparison.tasks[t].correct[m] for m in (first, second)}] for t in tasks]
    draws = task_bootstrap(groups)
    mean = float(np.mean([comparison.tasks[t].accuracy(first) - comparison.tasks[t].accuracy(second) for t in tasks]))
    return mean, interval(draws[first] - draws[second])


def rank_correlation(x: list[float], y: list[float]) -> tuple[float, float]:
    """Spearman's rank correlation and its two-sided p-value (NaN with fewer than 3 points or a
    constant variable)."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan"), float("nan")
    result = scipy_stats.spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)


MIN_TASKS_FOR_CORRELATION = 5


def gap_predicts_failure(comparison: VectorComparison, icl: dict[str, float]) -> tuple[float, float]:
    """Across tasks: the rank correlation between the task vector's KL divergence from ICL and its
    shortfall from ICL (ICL accuracy minus TV accuracy), on the same prompts; NaN with fewer than
    ``MIN_TASKS_FOR_CORRELATION`` tasks."""
    tasks = [t for t in comparison.tasks if t in icl]
    if len(tasks) < MIN_TASKS_FOR_CORRELATION:
        return float("nan"), float("nan")
    return rank_correlation(
        [comparison.tasks[t].kl["tv"] for t in tasks], [icl[t] - comparison.tasks[t].accuracy("tv") for t in tasks]
    )


def summary_sentences(
    comparison: VectorComparison, kept: list[str], icl: dict[str, float], baseline: dict[str, float]
) -> list[str]:
    """Sentences computed from the numbers: the means over the tasks where ICL works, which method is
    significantly better where, how far the controls are from the baseline, which heads are shared,
    and whether the distribution gap predicts the task vector's failures."""
    c = comparison
    tv, tv_ci = mean_with_interval(c, kept, "tv")
    fv, fv_ci = mean_with_interval(c, kept, "fv")
    sentences = []
    if kept:
        d, (lo, hi) = paired_difference(c, kept)
        if lo > 0 or hi < 0:
            relation = f"the task vector is significantly {'better' if d > 0 else 'worse'}"
        else:
            relation = "the difference is not significant"
        sentences.append(
            f"Over the {len(kept)} tasks where ICL works, the task vector reaches {tv:.2f} "
            f"[{tv_ci[0]:.2f}, {tv_ci[1]:.2f}] and the function vector of {c.n_heads} heads {fv:.2f} "
            f"[{fv_ci[0]:.2f}, {fv_ci[1]:.2f}] on the same test prompts; paired prompt by prompt, the task vector "
            f"minus the function vector is {d:+.2f} [{lo:+.2f}, {hi:+.2f}]: {relation}. The two saw different "
            "information and tuning (the task vector the test prompt's own demonstrations and a layer chosen on dev; "
            f"the function vector {c.n_heads} heads fixed in advance, from dev prompts): this is no ranking of the "
            "methods, which Methods compared makes from one pool, each tuned on dev."
        )
    else:
        sentences.append("ICL beats the baseline by 0.2 on none of the tasks, so no mean is given.")
    by = {d: [t for t, r in c.tasks.items() if r.direction == d] for d in ("tv", "fv", "neither")}
    sentences.append(
        f"Per task (McNemar, Holm-adjusted over this model's {len(c.tasks)} tasks), the task vector is "
        f"significantly better on {len(by['tv'])} ({names_text(by['tv'])}), the function vector on "
        f"{len(by['fv'])} ({names_text(by['fv'])}), and neither on {len(by['neither'])}."
    )
    tasks = list(c.tasks)
    base = float(np.mean([baseline[t] for t in tasks if t in baseline])) if baseline else float("nan")
    parts = []
    for method in CONTROLS:
        mean = float(np.mean([c.tasks[t].accuracy(method) for t in tasks]))
        parts.append(f"{LABELS[method]} {mean:.2f}")
    sentences.append(
        f"Controls, mean over all {len(tasks)} tasks at theta's layer: " + ", ".join(parts) + f"; the bare "
        f"query alone (baseline) {base:.2f}. Shuffled-label ICL reaches "
        f"{np.mean([c.tasks[t].accuracy('shuffled_icl') for t in tasks]):.2f}, and "
        f"{np.mean([c.tasks[t].accuracy('shuffled_icl_fv') for t in tasks]):.2f} with the function vector added."
    )
    if kept:
        d, (lo, hi) = paired_difference(c, kept, "layer_average", "tv")
        if lo > 0 or hi < 0:
            sentences.append(
                f"The task's mean theta over its dev prompts is no control but a finding: on the same test prompts "
                f"it scores {d:+.2f} [{lo:+.2f}, {hi:+.2f}] against the per-prompt task vector (paired, the "
                f"{len(kept)} tasks where ICL works): one vector per task {'beats' if d > 0 else 'trails'} the "
                "vector of each prompt's own demonstrations."
            )
    shared = c.shared_heads()
    half = sum(count >= len(c.task_aie) / 2 for count in shared.values())
    heads = ", ".join(f"L{layer}.H{head} ({shared[(layer, head)]})" for layer, head in c.heads)
    sentences.append(
        f"The function vector's heads (largest mean indirect effect over tasks; in brackets, in how many of the "
        f"{len(c.task_aie)} tasks the head is among that task's own top {c.n_heads}): {heads}; {half} of "
        f"{c.n_heads} serve at least half of the tasks."
    )
    rho, p = gap_predicts_failure(c, icl)
    if rho == rho:
        verdict = "predicts" if p < ALPHA and rho > 0 else "does not significantly predict"
        sentences.append(
            f"The distribution gap {verdict} where the task vector falls short of ICL: across tasks, Spearman's "
            f"rho between the task vector's KL divergence from ICL and ICL's lead over it is {rho:.2f} "
            f"({'p < 0.001' if p < 0.001 else f'p = {p:.2g}'}, {len(c.tasks)} tasks)."
        )
    return sentences


def task_metrics(comparison: VectorComparison) -> dict[str, dict]:
    """Per task, for metrics.json: every method's accuracy on the first sampling's test prompts with
    its Wilson interval, the distribution gap, the chosen blocks and the paired test of TV against FV."""
    out = {}
    for task, r in comparison.tasks.items():
        entry = {}
        for method in METHODS:
            name = "tv_first_sampling" if method == "tv" else method
            entry[name] = rounded(r.accuracy(method))
            entry[f"{name}_ci"] = [rounded(v) for v in r.ci(method)]
        entry.update(
            kl_tv=rounded(r.kl["tv"]),
            kl_fv=rounded(r.kl["fv"]),
            top1_agreement_tv=rounded(r.top1["tv"]),
            top1_agreement_fv=rounded(r.top1["fv"]),
            fv_layer=r.fv_layer,
            tv_layer_first_sampling=r.tv_layer,
            fv_by_n_heads={str(n): rounded(v) for n, v in r.curve.items()},
            tv_vs_fv_p=rounded(r.tv_vs_fv.p_value),
            tv_vs_fv_p_holm=rounded(r.p_holm),
            tv_vs_fv=r.direction,
        )
        out[task] = entry
    return out


def model_metrics(comparison: VectorComparison, kept: list[str], icl: dict[str, float]) -> dict:
    tv, tv_ci = mean_with_interval(comparison, kept, "tv")
    fv, fv_ci = mean_with_interval(comparison, kept, "fv")
    d, d_ci = paired_difference(comparison, kept)
    rho, p = gap_predicts_failure(comparison, icl)
    return {
        "n_heads": comparison.n_heads,
        "heads": [list(h) for h in comparison.heads],
        "heads_shared_by_tasks": {f"L{layer}.H{head}": n for (layer, head), n in comparison.shared_heads().items()},
        "head_prompts_per_task": comparison.head_prompts,
        "icl_works": {
            "n_tasks": len(kept),
            "tv": rounded(tv),
            "tv_ci": [rounded(v) for v in tv_ci],
            "fv": rounded(fv),
            "fv_ci": [rounded(v) for v in fv_ci],
            "tv_minus_fv": rounded(d),
            "tv_minus_fv_ci": [rounded(v) for v in d_ci],
        },
        "kl_tv_vs_shortfall_spearman": rounded(rho),
        "kl_tv_vs_shortfall_p": rounded(p),
    }
