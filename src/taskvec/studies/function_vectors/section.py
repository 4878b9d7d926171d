"""The function-vector section of the extended report: its figures (each head's average indirect
effect, accuracy by number of heads), its table rows and its HTML, from one model's comparison
(:mod:`taskvec.studies.function_vectors.numbers`)."""

from __future__ import annotations

import numpy as np

from taskvec.report.numbers import rounded
from taskvec.report.page import image
from taskvec.studies.function_vectors.numbers import VectorComparison


def aie_heatmap(comparison: VectorComparison) -> dict[str, bytes]:
    """Each head's average indirect effect, averaged over tasks (layer x head), with the function
    vector's heads outlined."""
    import matplotlib.pyplot as plt

    from taskvec.report.plotting import STYLE, save_figure

    aie = comparison.aie
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * aie.shape[1] + 2.5), max(3.5, 0.2 * aie.shape[0] + 1.5)))
        bound = float(np.abs(aie).max()) or 1.0
        # vector cells, not an embedded bitmap: the SVG stays byte-identical from run to run
        image = ax.pcolormesh(
            np.arange(aie.shape[1] + 1) - 0.5,
            np.arange(aie.shape[0] + 1) - 0.5,
            aie,
            cmap="RdBu_r",
            vmin=-bound,
            vmax=bound,
        )
        for layer, head in comparison.heads:
            ax.add_patch(plt.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.2))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.grid(False)
        ax.set_title(f"{comparison.model}: average indirect effect (mean over {len(comparison.task_aie)} tasks)")
        fig.colorbar(image, ax=ax, label="rise in P(answer), shuffled-label prompts")
        fig.tight_layout()
        return save_figure(fig)  # inside the style: its SVG hash salt keeps the ids fixed


def heads_curve(comparison: VectorComparison, tasks: list[str]) -> dict[str, bytes]:
    """Mean test accuracy of the function vector against the number of heads summed, over ``tasks``,
    with the task vector's mean on the same prompts as a reference line."""
    import matplotlib.pyplot as plt

    from taskvec.report.plotting import STYLE, save_figure

    tasks = tasks or list(comparison.tasks)
    counts = sorted(set.intersection(*(set(comparison.tasks[t].curve) for t in tasks)))
    means = [np.mean([comparison.tasks[t].curve[n] for t in tasks]) for n in counts]
    tv = np.mean([comparison.tasks[t].accuracy("tv") for t in tasks])
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.plot(counts, means, marker="o", color="#2ca02c", label="function vector (bare query + FV)")
        ax.axhline(tv, color="#d62728", linestyle="--", label="task vector (bare query + theta)")
        ax.axvline(comparison.n_heads, color="#9e9e9e", linewidth=0.8, label=f"default: {comparison.n_heads} heads")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("heads summed into the function vector")
        ax.set_ylabel(f"mean test accuracy ({len(tasks)} tasks)")
        ax.set_ylim(0, 1)
        ax.legend(loc="lower right")
        ax.set_title(f"{comparison.model}: function vector by number of heads")
        fig.tight_layout()
        return save_figure(fig)


COLUMNS = (
    ("tv", "TV"),
    ("fv", "FV"),
    ("shuffled_icl", "shuffled ICL"),
    ("shuffled_icl_fv", "shuffled ICL + FV"),
    ("random_vector", "random vector"),
    ("other_task_theta", "other task's theta"),
    ("layer_average", "mean theta"),
)


def table_rows(comparison: VectorComparison, icl: dict[str, float], baseline: dict[str, float]) -> list[dict]:
    """One row per task: baseline and ICL (first sampling), every method with its interval, the
    distribution gap, the chosen blocks and TV against FV."""
    rows = []
    for task, r in comparison.tasks.items():
        row = {"model": comparison.model, "task": task, "baseline": rounded(baseline.get(task, float("nan")))}
        row["icl"] = rounded(icl.get(task, float("nan")))
        for method, _ in COLUMNS:
            low, high = r.ci(method)
            row[method] = rounded(r.accuracy(method))
            row[f"{method}_ci"] = f"[{low:.2f}, {high:.2f}]"
        row.update(
            kl_tv=rounded(r.kl["tv"]),
            kl_fv=rounded(r.kl["fv"]),
            top1_tv=rounded(r.top1["tv"]),
            top1_fv=rounded(r.top1["fv"]),
            tv_layer=r.tv_layer,
            fv_layer=r.fv_layer,
            tv_vs_fv_p_holm=rounded(r.p_holm),
            better=r.direction,
        )
        rows.append(row)
    return rows


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _p_text(p: float) -> str:
    """A p-value as printed: below 0.001 (where metrics.json's rounding gives 0) as "< 0.001"."""
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


def section_html(parts: list[tuple[VectorComparison, list[dict], list[str], dict]]) -> str:
    """The report's section: per model its sentences, table and figures. ``parts`` holds, per model,
    the comparison, its table rows, its sentences and its figures (``aie``, ``heads``: PNG/SVG bytes)."""
    import html

    out = [
        "<h2 id='function-vectors'>Task vectors and function vectors</h2>",
        "<p class='note'>The function vector (Todd et al., ICLR 2024): each attention head's mean output at the last "
        "token of the task's clean ICL prompts (dev); each head's average indirect effect, the rise in the probability "
        "of the answer's first token when the head's last-token output is set to its mean, on the same prompts with "
        "shuffled labels; the heads of largest effect averaged over tasks, their mean outputs summed through the "
        "attention's output projection (for Gemma 2 and 3 also scaled by the factor of the norm the attention output "
        "passes, at the layer's mean output), added to the bare query's last token after the block chosen on dev. The "
        "controls patch theta's layer the way theta is patched: a random vector with each prompt's theta's norm, the "
        "theta of another task, the task's mean theta over its dev prompts (the function-vector paper's layer "
        "average). KL: the mean divergence from ICL's next-token distribution to the patched run's (nats); top-1: how "
        "often the two agree on the top token. Everything here is on the first sampling of each task's splits (one "
        "split seed), so TV is that sampling's, not the main table's mean over samplings; intervals "
        "are 95% Wilson intervals, conditional on the layers, block and heads chosen on dev and on the one "
        "sampling; TV against FV is McNemar's exact test, Holm-adjusted over each model's tasks. "
        "Where this differs from Todd et al.: the prompts are this study's (k demonstrations in the task-vector "
        "paper's template; theirs had 10 in a question/answer template), the heads' means and effects come from "
        "a few dev prompts per task (the count is under each heat map), and the number of "
        "heads is their 10 of GPT-J's 448 scaled to the model.</p>",
    ]
    for comparison, rows, sentences, figures in parts:
        n_test = sorted({len(r.correct["tv"]) for r in comparison.tasks.values()})
        head = "".join(f"<th>{html.escape(label)}</th>" for _, label in COLUMNS)
        body = []
        for row in rows:
            cells = [row["task"], _num(row["baseline"]), _num(row["icl"])]
            for method, _ in COLUMNS:
                cells.append(f"{_num(row[method])} <span class='ci'>{row[f'{method}_ci']}</span>")
            cells += [
                f"{_num(row['kl_tv'])} / {_num(row['kl_fv'])}",
                f"{_num(row['top1_tv'])} / {_num(row['top1_fv'])}",
                f"{row['tv_layer']} / {row['fv_layer']}",
                f"{_p_text(row['tv_vs_fv_p_holm'])} ({row['better']})",
            ]
            body.append(
                "<tr>" + "".join(f"<td>{html.escape(str(c)) if '<' not in str(c) else c}</td>" for c in cells) + "</tr>"
            )
        out += [
            f"<h3>{html.escape(comparison.model)}</h3>",
            f"<p class='note'>{' to '.join(map(str, n_test))} test prompts per task.</p>",
            "".join(f"<p>{html.escape(s)}</p>" for s in sentences),
            "<table><thead><tr><th>task</th><th>baseline</th><th>ICL</th>"
            + head
            + "<th>KL TV / FV</th><th>top-1 TV / FV</th><th>layer TV / block FV</th><th>TV vs FV p (Holm)</th>"
            "</tr></thead><tbody>" + "".join(body) + "</tbody></table>",
            f"<figure>{image(figures['aie'], f'{comparison.model}: average indirect effect per head')}"
            f"<figcaption class='note'>Each head's average indirect effect, mean over tasks; outlined: the "
            f"{comparison.n_heads} heads of the function vector ({comparison.head_prompts} dev prompts per task: "
            "clean for the means, shuffled labels for the effects).</figcaption></figure>",
            f"<figure>{image(figures['heads'], f'{comparison.model}: accuracy by number of heads')}"
            "<figcaption class='note'>Function-vector accuracy on test against the number of top heads summed "
            "(tasks where ICL works), at the block chosen for the default number; dashed: the task vector on the same "
            "prompts.</figcaption></figure>",
        ]
    return "".join(out)
