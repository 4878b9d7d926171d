"""The study report: metrics.json, tables (CSV and Markdown), figures (PNG and SVG), and a
self-contained index.html."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from taskvec import store
from taskvec.report import figures as fig
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
from taskvec.workflow.contract import CONFLICTS, REPORT_FIGURES


def step_timings(benchmarks_dir: Path, steps: Sequence[str] | None = None) -> list[dict]:
    """Job-seconds, longest job and peak memory per step, from Snakemake's benchmark files
    (``<dir>/<step>/...tsv``): of ``steps``, in their order (default: every step there, by name)."""
    timings = []
    if steps is None:
        steps = sorted(p.name for p in benchmarks_dir.iterdir() if p.is_dir()) if benchmarks_dir.is_dir() else []
    for step_dir in (benchmarks_dir / step for step in steps):
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
    benchmark_steps: Sequence[str] | None = None,
) -> Path:
    """Write the report for ``result_files`` (``.../{model}/{task}/{sample}.parquet``) and the
    analyses (``.../{model}/{analysis}.parquet``) into ``out_dir``."""
    out = Path(out_dir)
    study = collect(
        [Path(f) for f in result_files], [Path(f) for f in analysis_files], [Path(f) for f in prompts_files]
    )
    store.write_json(metrics(study), out / "metrics.json")
    tables = out / "tables"
    write_table(accuracy_rows(study), tables, "accuracy")
    write_table(by_layer_rows(study), tables, "accuracy_by_layer")
    write_table(paper_rows(study), tables, "paper_comparison")
    conflicts = [row for model in study.models for row in conflict_rows(study, model)]
    for name, rows in (
        ("conflicting_tasks", conflicts),
        ("robustness", robustness_rows(study)),
        ("vocabulary", vocabulary_rows(study)),
    ):
        if rows:
            write_table(rows, tables, name)
    figures = _figures(study)
    for name, by_model in figures.items():
        for model, formats in by_model.items():
            for fmt, data in formats.items():
                store.write_bytes(data, out / "figures" / f"{name}_{model}.{fmt}")
    index = out / "index.html"
    timings = step_timings(Path(benchmarks_dir), benchmark_steps) if benchmarks_dir else []
    store.write_text(render_html(study, figures, timings), index)
    return index


def _figures(study: StudyResults) -> dict[str, dict[str, dict[str, bytes]]]:
    figures = {name: {} for name in (*REPORT_FIGURES, CONFLICTS)}  # the workflow's outputs name the same
    for model in study.models:
        figures["accuracy_by_layer"][model] = fig.accuracy_by_layer(study, model)
        figures["accuracy_summary"][model] = fig.accuracy_summary(study, model)
        analyses = study.analysis(model)
        if analyses.conflicting is not None and conflict_rows(study, model):
            figures["conflicting_tasks"][model] = fig.conflicting_tasks(study, model)
        if analyses.robustness is not None:
            figures["tsne"][model] = fig.tsne(study, model)
            figures["distances"][model] = fig.distances(study, model)
    return figures
