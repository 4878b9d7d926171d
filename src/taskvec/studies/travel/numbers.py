"""The report's "How far the task vector travels" section: accuracy against the number of
demonstrations (ICL and the task vector) and against the number of demonstration sets theta is
averaged over, with intervals, a table, figures and sentences computed from the numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from taskvec.analysis.stats import (
    ALPHA,
    contrast_interval,
    floored_interval,
    holm,
    task_bootstrap,
    wilson_interval,
)
from taskvec.report.numbers import rounded, signed
from taskvec.report.page import image

# the section's paired contrasts: ICL and the task vector from the fewest to the most demonstrations,
# and theta over the most demonstration sets against one; their intervals are Bonferroni-adjusted
TRAVEL_CONTRASTS = 3


@dataclasses.dataclass(frozen=True)
class TaskTravel:
    task: str
    layer: int
    by_k: dict[int, dict[str, np.ndarray]]  # k -> {"icl": correct[], "tv": correct[]}, on the same prompts
    by_contexts: dict[int, np.ndarray]  # M -> the task vector's correct[]

    def accuracy(self, experiment: str, value: int, method: str = "tv") -> float:
        values = self.by_k[value][method] if experiment == "k" else self.by_contexts[value]
        return float(np.mean(values))

    def ci(self, experiment: str, value: int, method: str = "tv") -> tuple[float, float]:
        values = self.by_k[value][method] if experiment == "k" else self.by_contexts[value]
        return wilson_interval(float(np.mean(values)), len(values))


@dataclasses.dataclass(frozen=True)
class Travel:
    model: str
    tasks: dict[str, TaskTravel]
    ks: list[int]
    contexts: list[int]
    study_k: list[int]

    def curve(self, tasks: list[str], experiment: str, method: str = "tv") -> dict[int, tuple[float, tuple]]:
        """Per setting, the mean accuracy over ``tasks`` and its two-level bootstrap interval."""
        values = self.ks if experiment == "k" else self.contexts
        out = {}
        for value in values:
            groups = [
                [{"x": self.tasks[t].by_k[value][method] if experiment == "k" else self.tasks[t].by_contexts[value]}]
                for t in tasks
            ]
            mean = float(np.mean([self.tasks[t].accuracy(experiment, value, method) for t in tasks]))
            n = sum(len(group[0]["x"]) for group in groups)
            out[value] = (mean, floored_interval(task_bootstrap(groups)["x"], mean, n))
        return out

    def difference(self, tasks: list[str], experiment: str, low: int, high: int, method: str = "tv"):
        """The mean over ``tasks`` of accuracy at ``high`` minus at ``low`` (same prompts), with its
        two-level bootstrap interval (prompts resampled in pairs), Bonferroni-adjusted over the section's
        :data:`TRAVEL_CONTRASTS`."""

        def values(t: str, v: int) -> np.ndarray:
            return self.tasks[t].by_k[v][method] if experiment == "k" else self.tasks[t].by_contexts[v]

        groups = [[{"high": values(t, high), "low": values(t, low)}] for t in tasks]
        draws = task_bootstrap(groups)
        mean = float(np.mean([values(t, high).mean() - values(t, low).mean() for t in tasks]))
        return mean, contrast_interval(draws["high"] - draws["low"], TRAVEL_CONTRASTS)

    def k_interaction(self, tasks: list[str], low: int, high: int) -> list[tuple[str, str, float, float, float, float]]:
        """Tasks where, from ``low`` to ``high`` demonstrations, ICL and the task vector change by
        different amounts on the same prompts: per prompt, ICL's change minus the task vector's (each
        -1, 0 or +1), a two-sided sign test of those differences (a difference in changes is tested
        itself: one change significant and the other not would be no test of it), Holm-adjusted over
        the tasks. (task, the method that gains more, ICL at low, at high, TV at low, at high)."""
        from scipy.stats import binomtest

        tests, signs = [], []
        for t in tasks:
            by_k = self.tasks[t].by_k
            changes = (by_k[high]["icl"].astype(int) - by_k[low]["icl"]) - (
                by_k[high]["tv"].astype(int) - by_k[low]["tv"]
            )
            more, less = int((changes > 0).sum()), int((changes < 0).sum())
            tests.append(binomtest(more, more + less, 0.5).pvalue if more + less else 1.0)
            signs.append("icl" if more > less else "tv")
        out = []
        for t, p, sign in zip(tasks, holm(tests) if tests else [], signs):
            if p < ALPHA:
                r = self.tasks[t]
                values = [r.accuracy("k", k, m) for m in ("icl", "tv") for k in (low, high)]
                out.append((t, sign, *values))
        return out


def read_travel(predictions: pa.Table, metadata: dict) -> Travel:
    data = predictions.to_pydict()
    columns = {name: np.array(values, dtype=object) for name, values in data.items()}
    per_task = {}
    for task in sorted(set(data["task"])):
        mine = columns["task"] == task

        def correct(experiment: str, value: int, method: str, mine=mine) -> np.ndarray:
            mask = mine & (columns["experiment"] == experiment) & (columns["value"] == value)
            mask &= columns["method"] == method
            order = np.argsort(columns["index"][mask].astype(int), kind="stable")
            return columns["correct"][np.flatnonzero(mask)[order]].astype(bool)

        per_task[task] = TaskTravel(
            task,
            int(metadata["layers"][task]),
            {k: {m: correct("k", k, m) for m in ("icl", "tv")} for k in metadata["ks"]},
            {m: correct("contexts", m, "tv") for m in metadata["contexts"]},
        )
    return Travel(
        str(metadata["model_name"]),
        per_task,
        [int(k) for k in metadata["ks"]],
        [int(m) for m in metadata["contexts"]],
        [int(k) for k in metadata["study_k"]],
    )


def _share(tv: float, icl: float) -> str:
    return f"{tv / icl:.0%} of ICL's" if icl > 0 else "ICL at 0"


def summary_sentences(travel: Travel, kept: list[str]) -> list[str]:
    """Sentences computed from the numbers, over the tasks where ICL works: how ICL and the task vector
    change with the number of demonstrations, and whether averaging theta over sets helps."""
    if not kept:
        return ["ICL beats the baseline by 0.2 on none of the tasks, so no mean is given."]
    sentences = []
    if travel.ks:
        icl, tv = travel.curve(kept, "k", "icl"), travel.curve(kept, "k", "tv")
        low, high = min(travel.ks), max(travel.ks)
        sentences.append(
            f"Over the {len(kept)} tasks where ICL works, with k = {low} demonstrations ICL reaches "
            f"{icl[low][0]:.2f} [{icl[low][1][0]:.2f}, {icl[low][1][1]:.2f}] and the task vector "
            f"{tv[low][0]:.2f} [{tv[low][1][0]:.2f}, {tv[low][1][1]:.2f}] ({_share(tv[low][0], icl[low][0])}); "
            f"with k = {high}, ICL {icl[high][0]:.2f} [{icl[high][1][0]:.2f}, {icl[high][1][1]:.2f}] and the task "
            f"vector {tv[high][0]:.2f} [{tv[high][1][0]:.2f}, {tv[high][1][1]:.2f}] "
            f"({_share(tv[high][0], icl[high][0])})."
        )
        if len(travel.ks) > 1:
            parts = []
            for method, label in (("icl", "ICL"), ("tv", "the task vector")):
                gain, (lo, hi) = travel.difference(kept, "k", low, high, method)
                verdict = "rises" if lo > 0 else "falls" if hi < 0 else "does not change significantly"
                parts.append(f"{label} {verdict} ({signed(gain)} [{signed(lo)}, {signed(hi)}])")
            top = max(tv[k][0] for k in travel.ks)
            best = [k for k in travel.ks if np.isclose(tv[k][0], top)]
            sentences.append(
                f"From k = {low} to k = {high}, " + " and ".join(parts) + f"; the task vector is best at k = "
                f"{' and '.join(map(str, best))} ({top:.2f}). theta is patched at the layer chosen with k = "
                f"{'/'.join(map(str, travel.study_k))} for every k."
            )
            divergent = travel.k_interaction(kept, low, high)
            if divergent:
                described = [
                    f"{t} ({'the task vector' if m == 'tv' else 'ICL'} gains more: ICL {a:.2f} to {b:.2f}, "
                    f"task vector {c:.2f} to {d:.2f})"
                    for t, m, a, b, c, d in divergent
                ]
                sentences.append(
                    f"Per task, ICL and the task vector change by different amounts from k = {low} to k = {high} "
                    "(a sign test of the difference of their changes on the same prompts, Holm-adjusted over the "
                    "tasks) on " + "; ".join(described) + "."
                )
    if len(travel.contexts) > 1:
        curve = travel.curve(kept, "contexts")
        one, most = min(travel.contexts), max(travel.contexts)
        gain, (lo, hi) = travel.difference(kept, "contexts", one, most)
        verdict = "helps" if lo > 0 else "hurts" if hi < 0 else "makes no significant difference"
        sentences.append(
            f"Averaging theta over {most} demonstration sets instead of {one} {verdict}: the task vector goes from "
            f"{curve[one][0]:.2f} to {curve[most][0]:.2f} ({signed(gain)} [{signed(lo)}, {signed(hi)}], paired on "
            f"the same queries; the three contrasts' intervals are Bonferroni-adjusted)."
        )
    return sentences


def task_metrics(travel: Travel) -> dict[str, dict]:
    """Per task, for metrics.json: ICL and TV accuracy at each k and TV at each M, with Wilson intervals."""
    out = {}
    for task, r in travel.tasks.items():
        out[task] = {
            "icl_by_k": {str(k): rounded(r.accuracy("k", k, "icl")) for k in travel.ks},
            "tv_by_k": {str(k): rounded(r.accuracy("k", k)) for k in travel.ks},
            "tv_by_k_ci": {str(k): [rounded(v) for v in r.ci("k", k)] for k in travel.ks},
            "tv_by_contexts": {str(m): rounded(r.accuracy("contexts", m)) for m in travel.contexts},
            "tv_by_contexts_ci": {str(m): [rounded(v) for v in r.ci("contexts", m)] for m in travel.contexts},
        }
    return out


def model_metrics(travel: Travel, kept: list[str]) -> dict:
    def curve(experiment: str, method: str = "tv") -> dict:
        if not kept:
            return {}
        return {
            str(v): {"mean": rounded(m), "ci": [rounded(lo), rounded(hi)]}
            for v, (m, (lo, hi)) in travel.curve(kept, experiment, method).items()
        }

    return {
        "n_tasks": len(kept),
        "layer": f"chosen on dev with k = {'/'.join(map(str, travel.study_k))}, one per task",
        "icl_by_k": curve("k", "icl"),
        "tv_by_k": curve("k"),
        "tv_by_contexts": curve("contexts"),
    }


def _category_means(travel: Travel, tasks: list[str], categories: dict[str, str], method: str) -> dict[str, list]:
    out = {}
    for category in sorted({categories[t] for t in tasks}):
        members = [t for t in tasks if categories[t] == category]
        out[category] = [float(np.mean([travel.tasks[t].accuracy("k", k, method) for t in members])) for k in travel.ks]
    return out


def k_figure(travel: Travel, tasks: list[str], categories: dict[str, str]) -> dict[str, bytes]:
    """ICL (solid) and the task vector (dashed) against k, one colour per task category, means over
    ``tasks``; the overall mean with its interval in black."""
    import matplotlib.pyplot as plt

    from taskvec.report.plotting import STYLE, save_figure

    tasks = tasks or list(travel.tasks)
    icl, tv = travel.curve(tasks, "k", "icl"), travel.curve(tasks, "k", "tv")
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.0, 3.8))
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        icl_cat, tv_cat = (_category_means(travel, tasks, categories, m) for m in ("icl", "tv"))
        for colour, category in zip(colours, icl_cat):
            ax.plot(travel.ks, icl_cat[category], color=colour, alpha=0.6, linewidth=1, label=category)
            ax.plot(travel.ks, tv_cat[category], color=colour, alpha=0.6, linewidth=1, linestyle="--")
        for curve, style, label in ((icl, "-", "ICL, mean"), (tv, "--", "task vector, mean")):
            means = [curve[k][0] for k in travel.ks]
            ax.plot(travel.ks, means, color="black", linestyle=style, marker="o", label=label)
            ax.fill_between(travel.ks, [curve[k][1][0] for k in travel.ks], [curve[k][1][1] for k in travel.ks],
                            color="black", alpha=0.08)  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks(travel.ks, [str(k) for k in travel.ks])
        ax.set_xlabel("demonstrations per prompt (k)")
        ax.set_ylabel(f"test accuracy ({len(tasks)} tasks)")
        ax.set_ylim(0, 1)
        ax.legend(loc="lower right", fontsize=7, ncol=2)
        ax.set_title(f"{travel.model}: ICL (solid) and task vector (dashed) by k")
        fig.tight_layout()
        return save_figure(fig)


def contexts_figure(travel: Travel, tasks: list[str]) -> dict[str, bytes]:
    """The task vector's mean accuracy against the number of demonstration sets averaged into theta."""
    import matplotlib.pyplot as plt

    from taskvec.report.plotting import STYLE, save_figure

    tasks = tasks or list(travel.tasks)
    curve = travel.curve(tasks, "contexts")
    values = travel.contexts
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.0, 3.4))
        ax.plot(values, [curve[m][0] for m in values], color="#d62728", marker="o", label="task vector, mean")
        ax.fill_between(values, [curve[m][1][0] for m in values], [curve[m][1][1] for m in values],
                        color="#d62728", alpha=0.12, label="95% interval")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks(values, [str(m) for m in values])
        ax.set_xlabel("demonstration sets averaged into theta (M)")
        ax.set_ylabel(f"test accuracy ({len(tasks)} tasks)")
        ax.set_ylim(0, 1)
        ax.legend(loc="lower right")
        ax.set_title(f"{travel.model}: theta over several contexts")
        fig.tight_layout()
        return save_figure(fig)


def table_rows(travel: Travel) -> list[dict]:
    rows = []
    for task, r in travel.tasks.items():
        row = {"model": travel.model, "task": task, "layer": r.layer}
        for k in travel.ks:
            row[f"icl_k{k}"] = rounded(r.accuracy("k", k, "icl"))
            row[f"tv_k{k}"] = rounded(r.accuracy("k", k))
        for m in travel.contexts:
            row[f"tv_m{m}"] = rounded(r.accuracy("contexts", m))
        rows.append(row)
    return rows


def section_html(parts: list[tuple[Travel, list[dict], list[str], dict]]) -> str:
    """Per model: its sentences, a table (ICL / TV at each k, TV at each M) and the two figures."""
    import html

    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    out = [
        "<h2 id='travel'>How far the task vector travels</h2>",
        "<p class='note'>On the first sampling of each task's splits (one split seed), on the study's test prompts "
        "(the same queries and dummy queries throughout), with theta patched at the layer the study chose on dev "
        "(one per task, for every setting). Number of demonstrations: the first k of a nested list, the study's own "
        "demonstrations first, then more drawn from the task's other usable pairs; ICL and the task vector of that "
        "prompt. Several contexts: theta averaged over M independent demonstration sets of the study's size, the "
        "first the study's own. Means are over the tasks where ICL works, with two-level bootstrap intervals (floored "
        "by the Wilson interval of the prompts taken together); the contrasts between settings are paired and "
        "Bonferroni-adjusted over the section's three; every interval holds each task's chosen layer fixed (the "
        "choice is not resampled). The table's cells are single accuracies (intervals in metrics.json).</p>",
    ]
    for travel, rows, sentences, figures in parts:
        head = "".join(f"<th>ICL / TV k={k}</th>" for k in travel.ks) + "".join(
            f"<th>TV M={m}</th>" for m in travel.contexts
        )
        body = []
        for row in rows:
            cells = [row["task"], str(row["layer"])]
            cells += [f"{num(row[f'icl_k{k}'])} / {num(row[f'tv_k{k}'])}" for k in travel.ks]
            cells += [num(row[f"tv_m{m}"]) for m in travel.contexts]
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        out += [
            f"<h3>{html.escape(travel.model)}</h3>",
            "".join(f"<p>{html.escape(s)}</p>" for s in sentences),
            "<table><thead><tr><th>task</th><th>layer</th>"
            + head
            + "</tr></thead><tbody>"
            + "".join(body)
            + "</tbody></table>",
            f"<figure>{image(figures['k'], f'{travel.model}: accuracy by number of demonstrations')}"
            "<figcaption class='note'>ICL (solid) and the task vector (dashed) against k: thin lines are task "
            "categories, black the mean with its interval (tasks where ICL works).</figcaption></figure>",
            f"<figure>{image(figures['contexts'], f'{travel.model}: accuracy by number of demonstration sets')}"
            "<figcaption class='note'>The task vector against the number of demonstration sets theta is averaged "
            "over (tasks where ICL works).</figcaption></figure>",
        ]
    return "".join(out)
