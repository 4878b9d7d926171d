"""The extended studies' report (``reports/extended/``, made by `make reproduce-all`): task vectors
against function vectors, and how far the task vector travels (demonstrations, demonstration sets,
prompt formats). It reads the study's results (for the
tasks where ICL works, the first sampling's ICL and baseline, the categories) and the extended
analyses, and writes index.html, metrics.json, tables and figures beside the main report, which it
does not change."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from taskvec import store
from taskvec.errors import ConfigError
from taskvec.function_vectors import report as vectors
from taskvec.report import formats, formats_section, travel
from taskvec.report.collect import StudyResults, collect
from taskvec.report.page import page
from taskvec.report.tables import write_table


def _kept(study: StudyResults, model: str, analysis: str) -> list[str]:
    """The tasks where ICL works (the paper's filter), among those an extended analysis ran on."""
    ran = getattr(study.analysis(model), analysis).tasks
    return [r.task for r in study.icl_works_results(model) if r.task in ran]


def _first_sampling(study: StudyResults, model: str, metric: str) -> dict[str, float]:
    return {r.task: getattr(r.samples[0], metric) for r in study.for_model(model)}


def extended_metrics(study: StudyResults) -> dict:
    """Per model and task: the function-vector comparison's figures (``fv``, ``fv_ci``,
    ``shuffled_icl``, ``random_vector``, ``kl_tv``, ``kl_fv`` and the rest) and how far the task vector
    travels (``icl_by_k``, ``tv_by_k``, ``tv_by_contexts``, ``icl_by_format``, ``tv_by_format`` and the
    rest, with Wilson intervals); per model the means over the tasks where ICL works with two-level
    bootstrap intervals (``function_vectors``, ``travel``, ``formats`` with its transfer matrix)."""
    out: dict = {"models": {}}
    for model in study.models:
        analyses = study.analysis(model)
        entry: dict = {"tasks": {}}
        if analyses.vectors is not None:
            for task, values in vectors.task_metrics(analyses.vectors).items():
                entry["tasks"].setdefault(task, {}).update(values)
            entry["function_vectors"] = vectors.model_metrics(
                analyses.vectors, _kept(study, model, "vectors"), _first_sampling(study, model, "icl")
            )
        if analyses.travel is not None:
            for task, values in travel.task_metrics(analyses.travel).items():
                entry["tasks"].setdefault(task, {}).update(values)
            entry["travel"] = travel.model_metrics(analyses.travel, _kept(study, model, "travel"))
        if analyses.formats is not None:
            for task, values in formats.task_metrics(analyses.formats).items():
                entry["tasks"].setdefault(task, {}).update(values)
            entry["formats"] = formats.model_metrics(analyses.formats, _kept(study, model, "formats"))
        if entry["tasks"]:
            out["models"][model] = entry
    return out


def _write_figures(figures: dict[str, dict[str, bytes]], out: Path, model: str) -> None:
    """Each figure (name -> {"png": ..., "svg": ...}) as figures/<name>_<model>.<format>."""
    for name, files in figures.items():
        for fmt, data in files.items():
            store.write_bytes(data, out / "figures" / f"{name}_{model}.{fmt}")


def _vectors_parts(study: StudyResults, out: Path, models: list[str]) -> tuple[list, list[dict]]:
    parts, rows = [], []
    for model in models:
        comparison = study.analysis(model).vectors
        kept = _kept(study, model, "vectors")
        icl, baseline = _first_sampling(study, model, "icl"), _first_sampling(study, model, "baseline")
        figures = {"heads_aie": vectors.aie_heatmap(comparison), "heads_n": vectors.heads_curve(comparison, kept)}
        _write_figures(figures, out, model)
        model_rows = vectors.table_rows(comparison, icl, baseline)
        rows += model_rows
        shown = {"aie": figures["heads_aie"], "heads": figures["heads_n"]}
        parts.append((comparison, model_rows, vectors.summary_sentences(comparison, kept, icl, baseline), shown))
    return parts, rows


def _travel_parts(study: StudyResults, out: Path, models: list[str]) -> tuple[list, list[dict]]:
    parts, rows = [], []
    for model in models:
        result = study.analysis(model).travel
        kept = _kept(study, model, "travel")
        categories = {r.task: r.category for r in study.for_model(model)}
        figures = {"k": travel.k_figure(result, kept, categories), "contexts": travel.contexts_figure(result, kept)}
        _write_figures({f"travel_{name}": files for name, files in figures.items()}, out, model)
        model_rows = travel.table_rows(result)
        rows += model_rows
        parts.append((result, model_rows, travel.summary_sentences(result, kept), figures))
    return parts, rows


def _formats_parts(study: StudyResults, out: Path, models: list[str]) -> tuple[list, list[dict], list[dict]]:
    parts, rows, transfer = [], [], []
    for model in models:
        result = study.analysis(model).formats
        kept = _kept(study, model, "formats")
        figure = formats_section.transfer_figure(result, kept)
        _write_figures({"formats_transfer": figure}, out, model)
        rows += formats_section.table_rows(result)
        transfer += formats_section.transfer_rows(result, kept)
        parts.append((result, kept, formats.summary_sentences(result, kept), figure))
    return parts, rows, transfer


def build_extended_report(
    result_files: Sequence[str | os.PathLike[str]],
    analysis_files: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
) -> Path:
    out = Path(out_dir)
    study = collect([Path(f) for f in result_files], [Path(f) for f in analysis_files])
    with_vectors = [m for m in study.models if study.analysis(m).vectors is not None]
    with_travel = [m for m in study.models if study.analysis(m).travel is not None]
    with_formats = [m for m in study.models if study.analysis(m).formats is not None]
    if not with_vectors and not with_travel and not with_formats:
        raise ConfigError(
            "no extended analysis among the files given (`taskvec function-vectors`, `taskvec travel` and "
            "`taskvec formats` write them)"
        )
    store.write_json(extended_metrics(study), out / "metrics.json")
    sections = []
    if with_vectors:
        parts, rows = _vectors_parts(study, out, with_vectors)
        write_table(rows, out / "tables", "function_vectors")
        sections.append(vectors.section_html(parts))
    if with_travel:
        parts, rows = _travel_parts(study, out, with_travel)
        write_table(rows, out / "tables", "travel")
        sections.append(travel.section_html(parts))
    if with_formats:
        parts, rows, transfer = _formats_parts(study, out, with_formats)
        write_table(rows, out / "tables", "formats")
        write_table(transfer, out / "tables", "formats_transfer")
        if not with_travel:
            sections.append("<h2 id='travel'>How far the task vector travels</h2>")
        sections.append(formats_section.section_html(parts))
    links = [
        (anchor, name)
        for anchor, name, shown in (
            ("function-vectors", "Function vectors", with_vectors),
            ("travel", "Travel", with_travel or with_formats),
            ("formats", "Prompt formats", with_formats),
        )
        if shown
    ]
    body = f"""<p class="note">Made by <code>make reproduce-all</code> beside the default study's report
(<a href="../index.html">../index.html</a>), from the same prompts and results; not part of the default study,
whose time it would exceed.</p>
{"".join(sections)}"""
    index = out / "index.html"
    store.write_text(
        page("taskvec: extended studies", "In-context learning creates task vectors: extended studies", links, body),
        index,
    )
    return index
