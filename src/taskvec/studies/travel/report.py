"""The travel study's part of the extended report (the skeleton of taskvec.studies.base)."""

from __future__ import annotations

from taskvec.studies.base import ModelContext, Section, bars
from taskvec.studies.travel import numbers


def read(files: dict) -> numbers.Travel:
    return numbers.read_travel(*files["travel"])


def metrics(result: numbers.Travel, context: ModelContext) -> tuple[dict, dict]:
    return numbers.task_metrics(result), numbers.model_metrics(result, context.kept)


def section(parts: list[tuple[ModelContext, numbers.Travel, dict]]) -> Section:
    html_parts, rows, figures = [], [], {"travel_k": {}, "travel_contexts": {}}
    for context, result, _ in parts:
        drawn = {
            "k": numbers.k_figure(result, context.kept, context.categories),
            "contexts": numbers.contexts_figure(result, context.kept),
        }
        for name, files in drawn.items():
            figures[f"travel_{name}"][context.model] = files
        model_rows = numbers.table_rows(result)
        rows += model_rows
        html_parts.append((result, model_rows, numbers.summary_sentences(result, context.kept), drawn))
    return Section(numbers.section_html(html_parts), {"travel": rows}, figures)


def headline(models: dict[str, dict]):
    by_model = {}
    for m, e in models.items():
        ks = sorted(int(k) for k in e.get("travel", {}).get("tv_by_k", {}))
        if len(ks) > 1:
            low, high = str(ks[0]), str(ks[-1])
            by_model[m] = bars(
                e["travel"],
                [
                    (f"ICL, k={low}", f"icl_by_k/{low}"),
                    (f"ICL, k={high}", f"icl_by_k/{high}"),
                    (f"TV, k={low}", f"tv_by_k/{low}"),
                    (f"TV, k={high}", f"tv_by_k/{high}"),
                ],
            )
    return ("Demonstrations per prompt", by_model) if any(by_model.values()) else None


def findings(models: dict[str, dict]) -> list[str]:
    return []
