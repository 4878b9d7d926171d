"""The study report: metrics.json, CSV tables, figures, and a self-contained index.html."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from taskvec import store
from taskvec.report.collect import StudyResults, collect
from taskvec.report.figures import accuracy_by_layer_png
from taskvec.report.html import render_html
from taskvec.report.tables import accuracy_rows, by_layer_rows, metrics, paper_rows, write_csv


def build_report(result_files: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str]) -> Path:
    """Write the report for ``result_files`` (``.../{model}/{task}.parquet``) into ``out_dir``."""
    out = Path(out_dir)
    study = collect([Path(f) for f in result_files])
    store.write_json(metrics(study), out / "metrics.json")
    write_csv(accuracy_rows(study), out / "tables" / "accuracy.csv")
    write_csv(by_layer_rows(study), out / "tables" / "accuracy_by_layer.csv")
    write_csv(paper_rows(study), out / "tables" / "paper_comparison.csv")
    figures = {}
    for model in study.models:
        png = accuracy_by_layer_png(study, model)
        store.write_bytes(png, out / "figures" / f"accuracy_by_layer_{model}.png")
        figures[model] = png
    index = out / "index.html"
    store.write_text(render_html(study, figures), index)
    return index


__all__ = ["StudyResults", "build_report", "collect"]
