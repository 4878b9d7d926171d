"""metrics.json and the CSV tables, built from the same numbers."""

from __future__ import annotations

import csv
import io
import os

from taskvec import store
from taskvec.report.collect import StudyResults
from taskvec.report.paper import paper_mean

DIGITS = 4


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), DIGITS)


def _rounded(scores: dict[str, float]) -> dict[str, float | None]:
    return {key: _round(value) for key, value in scores.items()}


def _ratio(numerator: float, denominator: float) -> float | None:
    return _round(numerator / denominator) if denominator else None


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
                "n_pairs": r.n_pairs,
                "icl_works": r.icl_works,
                "sources": r.sources,
                "paper_task": r.metadata["task"].get("paper_task"),
            }
        means = study.means(model)
        n_kept, kept = study.icl_works_means(model)
        models[model] = {
            "n_layers": study.n_layers(model),
            "tasks": tasks,
            "mean": _rounded(means),
            "tv_over_icl": _ratio(means["tv"], means["icl"]),
            "by_category": {c: _rounded(m) for c, m in study.category_means(model).items()},
            "icl_works": {"n_tasks": n_kept, **_rounded(kept), "tv_over_icl": _ratio(kept["tv"], kept["icl"])},
        }
    paper = {task: _rounded(paper_mean(study.paper_task(task))) for task in study.tasks if study.paper_task(task)}
    return {"models": models, "paper_mean_over_models": paper}


def accuracy_rows(study: StudyResults) -> list[dict]:
    return [
        {
            "model": r.model, "task": r.task, "category": r.category,
            "baseline": _round(r.scores.baseline), "icl": _round(r.scores.icl), "tv": _round(r.scores.tv),
            "best_layer": r.scores.best_layer, "n_layers": study.n_layers(r.model),
            "n_test": r.scores.n_test, "n_baseline": r.scores.n_baseline, "n_pairs": r.n_pairs,
            "sources": r.sources,
        }
        for r in study.results
    ]


def paper_rows(study: StudyResults) -> list[dict]:
    rows = []
    for task in study.tasks:
        paper_task = study.paper_task(task)
        mean = paper_mean(paper_task) if paper_task else None
        row = {"task": task, "paper_task": paper_task or ""}
        for key in ("baseline", "icl", "tv"):
            row[f"paper_{key}"] = _round(mean[key]) if mean else ""
        for model in study.models:
            result = study.get(model, task)
            for key in ("baseline", "icl", "tv"):
                row[f"{model}_{key}"] = _round(getattr(result.scores, key)) if result else ""
        rows.append(row)
    return rows


def by_layer_rows(study: StudyResults) -> list[dict]:
    return [
        {"model": r.model, "task": r.task, "layer": layer, "dev_tv": _round(dev),
         "chosen": layer == r.scores.best_layer}
        for r in study.results
        for layer, dev in enumerate(r.scores.dev_by_layer)
    ]


def write_csv(rows: list[dict], path: str | os.PathLike[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    store.write_text(buffer.getvalue(), path)
