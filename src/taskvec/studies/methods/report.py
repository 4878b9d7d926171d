"""The methods comparison's part of the extended report (the skeleton of taskvec.studies.base)."""

from __future__ import annotations

from taskvec.studies.base import ModelContext, Section
from taskvec.studies.methods import figures as drawn
from taskvec.studies.methods import numbers, text
from taskvec.studies.methods.section import section_html

PROTOCOL = (
    "One protocol for every method, on the first sampling of each task: the study's test prompts and scoring (the "
    "paper's first-token rule, and the strict metric on the greedy answer). Two regimes, never ranked together: "
    "per prompt (ICL and the task vector of the test prompt's own demonstrations, from the study's results) and "
    "task level (one vector per task, from one fixed pool of demonstration sets drawn from the task's pairs that "
    "are no dev or test query; the same pool for every task-level method). Every choice (block, strength) is made "
    "on the bare dev queries; the table gives how many configurations each method tried, the labelled examples it "
    "used (pool and dev queries) and the parameters it trained. A run is a measurement only once it passes its "
    "gates: a trained method's first loss below a uniform guess over the vocabulary and its dev accuracy not "
    "below the bare query's; a chosen method's best configuration above the bare query on dev. A method failing "
    "them on more than half the tasks is marked failed and left out of every contrast and ranking. Gap closed: "
    "(method - bare) / (ICL - bare), of the means over the tasks where ICL works and a pool exists (so tasks with "
    "a wider gap weigh more), with a two-level bootstrap interval (tasks, then prompts); 0 and 1 by definition "
    "for the bare query and ICL. Every interval is conditional on the dev choices, the one pool and the one "
    "sampling. The task-level methods see the pool's labelled pairs and the dev queries, ICL the prompt's 5: a "
    "gap closed above 1 says a vector made from that many examples scores above 5-shot ICL. Label controls: the "
    "pool's labels deranged (no demonstration keeps its own answer) or drawn at random from the task's answers, "
    "and ICL under the same controls on the test prompts' own demonstrations; the share of each gap that survives "
    "says how much of it the answer space and format carry without the mapping. Costs are token positions "
    "run through the model, in units of one k-shot ICL forward: per query (the first answer token) and one-off "
    "(the vector and the dev choice; a backward pass's positions are given apart); seconds are in the step's log. "
    "KL to ICL: KL(ICL's next-token distribution || the method's) on each test prompt, in nats, averaged (not "
    "measured for the per-prompt task vector)."
)


def read(files: dict) -> numbers.MethodComparison:
    return numbers.read_methods(*files["methods"])


def metrics(result: numbers.MethodComparison, context: ModelContext) -> tuple[dict, dict]:
    return numbers.task_metrics(result), numbers.model_metrics(result, context.kept)


def _nothing_to_show(text: str) -> dict[str, bytes]:
    """A declared figure with nothing to draw (no head ranking to compare, say): a note in its place."""
    import matplotlib.pyplot as plt

    from taskvec.report.plotting import STYLE, save_figure

    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8)
        return save_figure(fig)


def section(parts: list[tuple[ModelContext, numbers.MethodComparison, dict]]) -> Section:
    html_parts, rows, figures = [], [], {"methods_cost": {}, "methods_tasks": {}, "methods_heads": {}}
    for context, comparison, model_metrics in parts:
        model_figures = {
            "methods_cost": drawn.cost_figure(comparison, model_metrics),
            "methods_tasks": drawn.heatmap_figure(comparison),
            "methods_heads": drawn.agreement_figure(comparison, model_metrics),
        }
        for name, files in model_figures.items():
            figures[name][context.model] = files or _nothing_to_show(f"{context.model}: nothing to show")
        rows += numbers.table_rows(comparison, model_metrics)
        sentences = text.summary_sentences(comparison, model_metrics)
        html_parts.append((comparison, model_metrics, sentences, model_figures))
    return Section(section_html(html_parts, PROTOCOL), {"methods": rows}, figures)


def headline(models: dict[str, dict]):
    """ICL and every task-level method whose run passed its gates: mean first-token accuracy with its
    interval, over the compared tasks."""
    by_model = {}
    for model, entry in models.items():
        compared = (entry.get("methods") or {}).get("methods") or {}
        failed = set(entry["methods"].get("failed", [])) if compared else set()
        shown = ["icl", *(m for m, e in compared.items() if "gate" in e and m not in failed)]
        by_model[model] = [
            (numbers.label(m), compared[m]["accuracy"], compared[m]["accuracy_ci"]) for m in shown if m in compared
        ]
    if not any(by_model.values()):
        return None
    return "Methods compared, task level\n(one pool each, tuned on dev)", by_model


def findings(models: dict[str, dict]) -> list[str]:
    """Per model: the range of the gap the passing task-level methods close by each metric, the failed
    runs, and what survives of the reference method's gap and of ICL's with deranged labels."""
    return [line for model, entry in models.items() for line in text.findings(model, entry.get("methods") or {})]
