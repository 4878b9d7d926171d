"""metrics.json and the CSV tables, built from the same numbers."""

from __future__ import annotations

import csv
import io
import os

from taskvec import store
from taskvec.report.collect import StudyResults

DIGITS = 4


def _round(value: float) -> float:
    return round(float(value), DIGITS)


def metrics(study: StudyResults) -> dict:
    models = {}
    for model in study.models:
        tasks = {}
        for r in study.for_model(model):
            s = r.scores
            tasks[r.task] = {
                "category": r.category,
                "baseline": _round(s.baseline),
                "icl": _round(s.icl),
                "tv": _round(s.tv),
                "best_layer": s.best_layer,
                "n_test": s.n_test,
                "n_dev": r.metadata["sizes"]["dev"],
                "n_baseline": s.n_baseline,
                "n_pairs": r.metadata["n_pairs_usable"],
            }
        means = study.means(model)
        models[model] = {
            "n_layers": study.n_layers(model),
            "tasks": tasks,
            "mean": {key: _round(value) for key, value in means.items()},
            "tv_over_icl": _round(means["tv"] / means["icl"]) if means["icl"] else None,
        }
    return {"models": models}


def accuracy_rows(study: StudyResults) -> list[dict]:
    return [
        {
            "model": r.model, "task": r.task, "category": r.category,
            "baseline": _round(r.scores.baseline), "icl": _round(r.scores.icl), "tv": _round(r.scores.tv),
            "best_layer": r.scores.best_layer, "n_layers": study.n_layers(r.model),
            "n_test": r.scores.n_test, "n_baseline": r.scores.n_baseline,
        }
        for r in study.results
    ]


def by_layer_rows(study: StudyResults) -> list[dict]:
    return [
        {"model": r.model, "task": r.task, "layer": layer, "dev_tv": _round(dev), "test_tv": _round(test)}
        for r in study.results
        for layer, (dev, test) in enumerate(zip(r.scores.dev_by_layer, r.scores.test_by_layer))
    ]


def write_csv(rows: list[dict], path: str | os.PathLike[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    store.write_text(buffer.getvalue(), path)
