"""The prompt-formats study's part of the extended report (the skeleton of taskvec.studies.base)."""

from __future__ import annotations

from taskvec.studies.base import ModelContext, Section, bars
from taskvec.studies.formats import numbers, text
from taskvec.studies.formats import section as shown


def read(files: dict) -> numbers.Formats:
    return numbers.read_formats(*files["formats"])


def metrics(result: numbers.Formats, context: ModelContext) -> tuple[dict, dict]:
    return numbers.task_metrics(result), numbers.model_metrics(result, context.kept)


def section(parts: list[tuple[ModelContext, numbers.Formats, dict]]) -> Section:
    html_parts, rows, transfer, figures = [], [], [], {"formats_transfer": {}}
    for context, result, _ in parts:
        figure = shown.transfer_figure(result, context.kept)
        figures["formats_transfer"][context.model] = figure
        rows += shown.table_rows(result)
        transfer += shown.transfer_rows(result, context.kept)
        html_parts.append((result, context.kept, text.summary_sentences(result, context.kept), figure))
    return Section(shown.section_html(html_parts), {"formats": rows, "formats_transfer": transfer}, figures)


def headline(models: dict[str, dict]):
    by_model = {
        m: bars(e.get("formats"), [("TV, own format", "tv_own"), ("TV, other formats", "tv_other")])
        for m, e in models.items()
    }
    by_model = {m: b for m, b in by_model.items() if b}
    return ("Prompt formats", by_model) if by_model else None


def findings(models: dict[str, dict]) -> list[str]:
    return []
