"""The study report: metrics.json, tables (CSV and Markdown), figures (PNG and SVG), and a
self-contained index.html."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from taskvec import store
from taskvec.report import figures as fig
from taskvec.report import vectors
from taskvec.report.collect import StudyResults, collect
from taskvec.report.html import render_html
from taskvec.report.tables import (
    accuracy_rows,
    by_layer_rows,
    conflict_rows,
    metrics,
    paper_rows,
    robustness_rows,
    vocabulary_rows,
    write_table,
)


def step_timings(benchmarks_dir: Path) -> list[dict]:
    """Job-seconds, longest job and peak memory per step, from Snakemake's benchmark files
    (``<dir>/<step>/...tsv``)."""
    timings = []
    for step_dir in sorted(p for p in benchmarks_dir.iterdir() if p.is_dir()) if benchmarks_dir.is_dir() else []:
        seconds, memory = [], []
        for path in sorted(step_dir.rglob("*.tsv")):
            with path.open() as handle:
                row = next(csv.DictReader(handle, delimiter="\t"), None)
            if row:
                seconds.append(float(row["s"]))
                memory.append(float(row["max_rss"]) if row["max_rss"] not in ("", "NA", "-") else 0.0)
        if seconds:
            timings.append(
                {
                    "step": step_dir.name,
                    "jobs": len(seconds),
                    "seconds": sum(seconds),
                    "max_seconds": max(seconds),
                    "peak_rss_mb": max(memory),
                }
            )
    return timings


def build_report(
    result_files: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    analysis_files: Sequence[str | os.PathLike[str]] = (),
    benchmarks_dir: str | os.PathLike[str] | None = None,
    prompts_files: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Write the report for ``result_files`` (``.../{model}/{task}/{sample}.parquet``) and the
    analyses (``.../{model}/{analysis}.parquet``) into ``out_dir``."""
    out = Path(out_dir)
    study = collect(
        [Path(f) for f in result_files], [Path(f) for f in analysis_files], [Path(f) for f in prompts_files]
    )
    store.write_json(_with_vectors(metrics(study), study), out / "metrics.json")
    tables = out / "tables"
    write_table(accuracy_rows(study), tables, "accuracy")
    write_table(by_layer_rows(study), tables, "accuracy_by_layer")
    write_table(paper_rows(study), tables, "paper_comparison")
    conflicts = [row for model in study.models for row in conflict_rows(study, model)]
    for name, rows in (
        ("conflicting_tasks", conflicts),
        ("robustness", robustness_rows(study)),
        ("vocabulary", vocabulary_rows(study)),
        ("function_vectors", [row for model in study.models for row in _vector_rows(study, model)]),
    ):
        if rows:
            write_table(rows, tables, name)
    figures = _figures(study)
    for name, by_model in figures.items():
        for model, formats in by_model.items():
            for fmt, data in formats.items():
                store.write_bytes(data, out / "figures" / f"{name}_{model}.{fmt}")
    index = out / "index.html"
    timings = step_timings(Path(benchmarks_dir)) if benchmarks_dir else []
    store.write_text(render_html(study, figures, timings, _vectors_section(study, figures)), index)
    return index


def _figures(study: StudyResults) -> dict[str, dict[str, dict[str, bytes]]]:
    names = ("accuracy_by_layer", "accuracy_summary", "conflicting_tasks", "tsne", "distances", "heads_aie", "heads_n")
    figures = {name: {} for name in names}
    for model in study.models:
        figures["accuracy_by_layer"][model] = fig.accuracy_by_layer(study, model)
        figures["accuracy_summary"][model] = fig.accuracy_summary(study, model)
        analyses = study.analysis(model)
        if analyses.conflicting is not None and conflict_rows(study, model):
            figures["conflicting_tasks"][model] = fig.conflicting_tasks(study, model)
        if analyses.robustness is not None:
            figures["tsne"][model] = fig.tsne(study, model)
            figures["distances"][model] = fig.distances(study, model)
        if analyses.vectors is not None:
            figures["heads_aie"][model] = vectors.aie_heatmap(analyses.vectors)
            figures["heads_n"][model] = vectors.heads_curve(analyses.vectors, _kept(study, model))
    return figures


def _kept(study: StudyResults, model: str) -> list[str]:
    """The tasks where ICL works (the paper's filter), among those the comparison ran on."""
    comparison = study.analysis(model).vectors
    return [r.task for r in study.icl_works_results(model) if r.task in comparison.tasks]


def _first_sampling(study: StudyResults, model: str, metric: str) -> dict[str, float]:
    return {r.task: getattr(r.samples[0], metric) for r in study.for_model(model)}


def _vector_rows(study: StudyResults, model: str) -> list[dict]:
    comparison = study.analysis(model).vectors
    if comparison is None:
        return []
    return vectors.table_rows(
        comparison, _first_sampling(study, model, "icl"), _first_sampling(study, model, "baseline")
    )


def vector_sentences(study: StudyResults, model: str) -> list[str]:
    comparison = study.analysis(model).vectors
    return vectors.summary_sentences(
        comparison,
        _kept(study, model),
        _first_sampling(study, model, "icl"),
        _first_sampling(study, model, "baseline"),
    )


def _with_vectors(numbers: dict, study: StudyResults) -> dict:
    """metrics.json with the function-vector comparison: per task its figures (``fv``, ``fv_ci``,
    ``shuffled_icl``, ``random_vector``, ``kl_tv``, ``kl_fv`` and the rest), per model the means."""
    for model in study.models:
        comparison = study.analysis(model).vectors
        if comparison is None:
            continue
        entry = numbers["models"][model]
        for task, values in vectors.task_metrics(comparison).items():
            entry["tasks"][task].update(values)
        entry["function_vectors"] = vectors.model_metrics(
            comparison, _kept(study, model), _first_sampling(study, model, "icl")
        )
    return numbers


def _vectors_section(study: StudyResults, figures: dict) -> str:
    parts = []
    for model in study.models:
        comparison = study.analysis(model).vectors
        if comparison is None:
            continue
        parts.append(
            (
                comparison,
                _vector_rows(study, model),
                vector_sentences(study, model),
                {"aie": figures["heads_aie"][model], "heads": figures["heads_n"][model]},
            )
        )
    if not parts:
        return (
            "<h2 id='function-vectors'>Task vectors and function vectors</h2><p>Not run in this study "
            "(<code>function_vectors.run</code> in params.yaml).</p>"
        )
    return vectors.section_html(parts)


__all__ = ["StudyResults", "build_report", "collect"]
