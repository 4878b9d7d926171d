"""The function-vector study's part of the extended report (the skeleton of taskvec.studies.base)."""

from __future__ import annotations

from taskvec.studies.base import ModelContext, Section
from taskvec.studies.function_vectors import numbers
from taskvec.studies.function_vectors import section as shown


def read(files: dict) -> numbers.VectorComparison:
    predictions, metadata = files["function_vectors"]
    return numbers.read_comparison(predictions, files["heads"][0], metadata)


def metrics(result: numbers.VectorComparison, context: ModelContext) -> tuple[dict, dict]:
    return numbers.task_metrics(result), numbers.model_metrics(result, context.kept, context.icl)


def section(parts: list[tuple[ModelContext, numbers.VectorComparison, dict]]) -> Section:
    html_parts, rows, figures = [], [], {"heads_aie": {}, "heads_n": {}}
    for context, comparison, _ in parts:
        drawn = {"heads_aie": shown.aie_heatmap(comparison), "heads_n": shown.heads_curve(comparison, context.kept)}
        for name, files in drawn.items():
            figures[name][context.model] = files
        model_rows = shown.table_rows(comparison, context.icl, context.baseline)
        rows += model_rows
        sentences = numbers.summary_sentences(comparison, context.kept, context.icl, context.baseline)
        html_parts.append((comparison, model_rows, sentences, {"aie": drawn["heads_aie"], "heads": drawn["heads_n"]}))
    return Section(shown.section_html(html_parts), {"function_vectors": rows}, figures)


def headline(models: dict[str, dict]):
    by_model = {
        m: [
            (label, e["function_vectors"]["icl_works"][key], e["function_vectors"]["icl_works"][f"{key}_ci"])
            for label, key in (("task vector", "tv"), ("function vector", "fv"))
            if e["function_vectors"]["icl_works"].get(key) is not None
        ]
        for m, e in models.items()
        if "function_vectors" in e
    }
    title = "Per-prompt task vector, task-level\nfunction vector (unmatched)"
    return (title, by_model) if any(by_model.values()) else None


def findings(models: dict[str, dict]) -> list[str]:
    """The section's contrast is not matched: said where the summary lists the findings."""
    if not any("function_vectors" in e for e in models.values()):
        return []
    return [
        "Function vectors: their section sets the per-prompt task vector (the test prompt's own demonstrations) "
        "against a task-level function vector (dev prompts, a fixed head count): different information, not a "
        "ranking. Both as task-level methods from one pool, tuned alike, are in Methods compared."
    ]
