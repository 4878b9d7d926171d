"""Figures as PNG and SVG bytes, deterministic (no dates in the metadata, fixed SVG ids).

Every figure has labelled axes with units and a legend; the style lives in
``taskvec.report.plotting.STYLE``, shared with the extended studies' figures.
"""

from __future__ import annotations

import numpy as np

from taskvec.report.collect import StudyResults
from taskvec.report.paper import paper_mean
from taskvec.report.plotting import STYLE, plt, save_figure  # pyplot with the report's backend
from taskvec.report.tables import conflict_rows, dev_curve_by_category

METHOD_COLOURS = {"baseline": "#9e9e9e", "icl": "#1f77b4", "tv": "#d62728"}
METHOD_LABELS = {
    "baseline": "baseline (bare query)",
    "icl": "ICL (demonstrations + query)",
    "tv": "task vector (bare query + theta)",
}


def accuracy_by_layer(study: StudyResults, model: str) -> dict[str, bytes]:
    """Dev accuracy of the task vector against the patched layer: each task (thin), each category's
    mean (thick), and each task's chosen layer (dot)."""
    rows = study.for_model(model)
    n_layers = study.n_layers(model)
    layers = np.arange(n_layers)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 4.4))
        categories = dev_curve_by_category(study, model)
        colours = dict(zip(categories, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
        for r in rows:
            ax.plot(layers, r.scores.dev_by_layer, color=colours[r.category], linewidth=0.8, alpha=0.35)
            ax.plot(
                r.scores.best_layer,
                r.scores.dev_by_layer[r.scores.best_layer],
                "o",
                color=colours[r.category],
                markersize=3.5,
                alpha=0.8,
            )
        for category, curve in categories.items():
            ax.plot(layers, curve, color=colours[category], linewidth=2.4, label=f"{category} (mean)")
        ax.plot([], [], "o", color="#444", markersize=3.5, label="a task's chosen layer")
        ax.plot([], [], color="#444", linewidth=0.8, alpha=0.5, label="one task")
        ax.set_xlabel(f"patched layer (decoder block index, 0 to {n_layers - 1})")
        ax.set_ylabel("task-vector accuracy on dev prompts (fraction)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(0, n_layers - 1)
        ax.set_title(f"{model}: task-vector accuracy by layer (mean over split seeds)")
        ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        return save_figure(fig)


def accuracy_summary(study: StudyResults, model: str) -> dict[str, bytes]:
    """Baseline, ICL and task-vector test accuracy per task with 95% Wilson intervals, and hollow
    beside each the paper's mean over its models where the task is one of the paper's."""
    rows = study.for_model(model)
    y = np.arange(len(rows))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 0.28 * len(rows) + 1.4))
        for offset, method in zip((-0.25, 0, 0.25), METHOD_COLOURS):
            values = np.array([getattr(r.scores, method) for r in rows])
            low = values - np.array([r.scores.ci[method][0] for r in rows])
            high = np.array([r.scores.ci[method][1] for r in rows]) - values
            ax.errorbar(
                values,
                y + offset,
                xerr=[low, high],
                fmt="o",
                markersize=3.5,
                capsize=2,
                linewidth=1,
                color=METHOD_COLOURS[method],
                label=METHOD_LABELS[method],
            )
        paper = [paper_mean(study.paper_task(r.task)) if study.paper_task(r.task) else None for r in rows]
        for number, (offset, method) in enumerate(zip((-0.25, 0, 0.25), METHOD_COLOURS)):
            shown = [(value[method], row) for value, row in zip(paper, y) if value]
            if shown:
                ax.plot(
                    [v for v, _ in shown],
                    [row + offset for _, row in shown],
                    linestyle="none",
                    marker="D",
                    markersize=4,
                    markerfacecolor="none",
                    markeredgewidth=0.8,
                    color=METHOD_COLOURS[method],
                    # one legend entry for the three: the colour says the method
                    label="the paper: mean of its models (hollow, same colours)" if number == 0 else None,
                )
        ax.set_yticks(y, [r.task for r in rows])
        ax.invert_yaxis()
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("test accuracy (fraction of prompts; bars: 95% Wilson interval)")
        ax.set_title(f"{model}: accuracy per task")
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.04), ncol=2)
        fig.tight_layout()
        return save_figure(fig)


def conflicting_tasks(study: StudyResults, model: str) -> dict[str, bytes]:
    """For each pair, how often the prediction follows A (the demonstrations) or B (the patched
    theta), without and with the patch."""
    rows = conflict_rows(study, model)
    pairs = [(r["task_a"], r["task_b"]) for r in rows]
    bars = (
        ("icl_on_a", "ICL, answer of A", "#1f77b4", ""),
        ("icl_on_b", "ICL, answer of B", "#aec7e8", ""),
        ("patched_on_a", "ICL + theta(B), answer of A", "#d62728", "//"),
        ("patched_on_b", "ICL + theta(B), answer of B", "#ff9896", "//"),
    )
    x = np.arange(len(pairs))
    width = 0.2
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8.5, 4.4))
        for i, (key, label, colour, hatch) in enumerate(bars):
            heights = [np.nan if r[key] is None else r[key] for r in rows]
            ax.bar(x + (i - 1.5) * width, heights, width, label=label, color=colour, hatch=hatch, edgecolor="white")
        ax.set_xticks(x, [f"A: {a}\nB: {b}" for a, b in pairs], fontsize=6.5)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("accuracy on A's test prompts (fraction)")
        ax.set_title(f"{model}: conflicting tasks (demonstrations of A, theta of B)")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
        fig.tight_layout()
        return save_figure(fig)


def tsne(study: StudyResults, model: str) -> dict[str, bytes]:
    table = study.analysis(model).robustness
    summary = study.analysis(model).robustness_summary
    tasks = table.column("task").to_pylist()
    x = np.array(table.column("x").to_pylist())
    y = np.array(table.column("y").to_pylist())
    names = list(dict.fromkeys(tasks))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(names), 2)))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 5.2))
        for name, colour in zip(names, colours):
            mask = np.array(tasks) == name
            ax.scatter(x[mask], y[mask], s=7, color=colour, label=name, alpha=0.8, linewidths=0)
        ax.set_xlabel("t-SNE dimension 1 (no unit)")
        ax.set_ylabel("t-SNE dimension 2 (no unit)")
        ax.set_title(f"{model}: task vectors at layer {summary['layer']}, one point per prompt")
        ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        return save_figure(fig)


def distances(study: StudyResults, model: str) -> dict[str, bytes]:
    summary = study.analysis(model).robustness_summary
    edges = np.array(summary["histogram_edges"])
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 3.8))
        for key, label, colour in (
            ("histogram_within", "same task", "#2ca02c"),
            ("histogram_across", "different tasks", "#7f7f7f"),
        ):
            counts = np.array(summary[key], dtype=float)
            share = counts / counts.sum() if counts.sum() else counts
            ax.stairs(share, edges, fill=True, alpha=0.45, color=colour, label=f"pairs of task vectors: {label}")
        ax.set_xlabel("cosine distance between two task vectors (1 - cosine similarity)")
        ax.set_ylabel("share of pairs")
        ax.set_title(f"{model}: within- and across-task distances at layer {summary['layer']}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return save_figure(fig)
