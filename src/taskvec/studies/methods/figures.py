"""The figures of the methods compared (:mod:`taskvec.studies.methods.numbers` computes what they
show): accuracy against per-query cost with its Pareto front, method x task accuracy, and the heads'
exact effects against attribution patching's estimates."""

from __future__ import annotations

import numpy as np

from taskvec.studies.methods.numbers import PER_PROMPT, MethodComparison, label


def agreement_figure(comparison: MethodComparison, metrics: dict) -> dict[str, bytes] | None:
    """Every head of every compared task: its exact average indirect effect against attribution
    patching's estimate, the exact top heads marked."""
    import matplotlib.pyplot as plt

    from taskvec.report.plotting import STYLE, save_figure

    agreement = metrics.get("head_agreement")
    if not agreement:
        return None
    meta = comparison.metadata["tasks"]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.6, 3.8))
        exact_all, estimate_all, top_x, top_y = [], [], [], []
        for task in agreement["tasks"]:
            record = meta[task]["head_agreement"]
            exact, estimate = np.array(record["exact_effects"]), np.array(record["attribution_effects"])
            exact_all.append(exact.ravel())
            estimate_all.append(estimate.ravel())
            for layer, head in record["exact_heads"]:
                top_x.append(exact[layer, head])
                top_y.append(estimate[layer, head])
        ax.scatter(np.concatenate(exact_all), np.concatenate(estimate_all), s=4, alpha=0.35, label="every head")
        ax.scatter(top_x, top_y, s=14, marker="x", color="C3", label="exact top heads")
        low = min(ax.get_xlim()[0], ax.get_ylim()[0])
        high = max(ax.get_xlim()[1], ax.get_ylim()[1])
        ax.plot([low, high], [low, high], color="grey", linewidth=0.7, zorder=0)
        ax.set_xlabel("average indirect effect, each head patched")
        ax.set_ylabel("attribution patching's estimate")
        rho = agreement["spearman_mean"]
        ax.set_title(
            f"{comparison.model}: head effects, {len(agreement['tasks'])} tasks"
            + ("" if rho is None else f" (mean Spearman {rho:.2f})"),
            fontsize=9,
        )
        ax.legend(fontsize=7)
        fig.tight_layout()
        return save_figure(fig)


def cost_figure(comparison: MethodComparison, metrics: dict) -> dict[str, bytes] | None:
    """Mean accuracy against per-query cost (log scale), with the Pareto front over every method drawn."""
    import matplotlib.pyplot as plt

    from taskvec.report.plotting import STYLE, save_figure

    entries = metrics.get("methods")
    if not entries:
        return None
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        for method, entry in entries.items():
            x, y = entry["per_query_cost"], entry["accuracy"]
            low, high = entry["accuracy_ci"]
            marker = "s" if method in PER_PROMPT else ("x" if method == "bare" else "o")
            ax.errorbar([x], [y], yerr=[[y - low], [high - y]], fmt=marker, capsize=2, label=label(method))
        points = sorted((e["per_query_cost"], e["accuracy"]) for e in entries.values())
        front, best = [], -1.0
        for x, y in points:
            if y > best:
                front.append((x, y))
                best = y
        ax.step([x for x, _ in front], [y for _, y in front], where="post", color="grey", linewidth=0.8, zorder=0)
        ax.set_xscale("log")
        ax.set_xlabel("per-query cost, in k-shot ICL forwards (token positions)")
        ax.set_ylabel("mean test accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(f"{comparison.model}: accuracy against cost", fontsize=9)
        ax.legend(fontsize=6.5, loc="lower right")
        fig.tight_layout()
        return save_figure(fig)


def heatmap_figure(comparison: MethodComparison) -> dict[str, bytes]:
    """Method x task test accuracy, every task (a task without a pool has no task-level cell)."""
    import matplotlib.pyplot as plt

    from taskvec.report.plotting import STYLE, save_figure

    names = ["bare", *PER_PROMPT, *comparison.task_level]
    grid = np.array(
        [[np.nan if (a := comparison.accuracy(t, m)) is None else a for t in comparison.tasks] for m in names]
    )
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(0.42 * len(comparison.tasks) + 2.4, 0.36 * len(names) + 1.6))
        shown = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(comparison.tasks)), comparison.tasks, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), [label(m) for m in names], fontsize=7)
        fig.colorbar(shown, ax=ax, label="test accuracy")
        ax.set_title(f"{comparison.model}: each method on each task", fontsize=9)
        fig.tight_layout()
        return save_figure(fig)
