"""The figures of the methods compared (:mod:`taskvec.studies.methods.numbers` computes what they
show): accuracy against one-off cost (with its Pareto front) and labelled examples, method x task
accuracy, and the heads' exact effects against attribution patching's estimates."""

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


BACKWARD_WEIGHT = 2.0  # a backward pass's positions count about twice a forward's (its FLOPs)


def one_off(entry: dict) -> float:
    """A method's one-off cost, forward positions plus :data:`BACKWARD_WEIGHT` times the backward ones,
    in k-shot ICL forwards."""
    return (entry.get("one_off_cost") or 0.0) + BACKWARD_WEIGHT * (entry.get("one_off_backward_cost") or 0.0)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other is cheaper and at least as accurate than, by rising cost."""
    front, best = [], -np.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def cost_figure(comparison: MethodComparison, metrics: dict) -> dict[str, bytes] | None:
    """Mean accuracy against what each method spends once per task: its one-off cost (forward and,
    weighted, backward positions; the Pareto front drawn) and its labelled examples, so that the
    task-level methods, which all cost the same per query, are told apart. A failed run is drawn
    hollow and named so."""
    import matplotlib.pyplot as plt

    from taskvec.report.plotting import STYLE, save_figure

    entries = {m: e for m, e in (metrics.get("methods") or {}).items() if m != "bare"}
    if not entries:
        return None
    failed = set(metrics.get("failed", []))
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.6), sharey=True)
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (method, entry) in enumerate(entries.items()):
            y = entry["accuracy"]
            low, high = entry["accuracy_ci"]
            marker = "s" if method in PER_PROMPT else "o"
            style = dict(fmt=marker, capsize=2, color=colours[i % len(colours)])
            if method in failed:
                style["markerfacecolor"] = "none"
            name = label(method) + (" (failed)" if method in failed else "")
            if entry.get("one_off_cost") is not None:  # the per-prompt task vector's dev choice is not measured
                left.errorbar([one_off(entry)], [y], yerr=[[y - low], [high - y]], label=name, **style)
            else:
                left.plot([], [], marker=marker, linestyle="none", color=style["color"], label=name)
            right.errorbar([entry.get("labelled_examples") or 0.0], [y], yerr=[[y - low], [high - y]], **style)
        measured = [
            (one_off(e), e["accuracy"])
            for m, e in entries.items()
            if m not in failed and e.get("one_off_cost") is not None
        ]
        front = pareto_front(measured)
        left.step([x for x, _ in front], [y for _, y in front], where="post", color="grey", linewidth=0.8, zorder=0)
        left.set_xscale("symlog", linthresh=1.0)
        left.set_xlabel(f"one-off cost per task\n(ICL forwards; backward x{BACKWARD_WEIGHT:g})")
        right.set_xlabel("labelled examples per task\n(pool; dev queries where it chose)")
        left.set_ylabel("mean test accuracy (first token)")
        left.set_ylim(0, 1)
        fig.suptitle(f"{comparison.model}: accuracy against what each method spends", fontsize=9)
        fig.tight_layout(rect=(0, 0, 0.74, 1))  # the legend beside the panels, not over a point
        fig.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(0.75, 0.5))
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
