"""metrics.json and the tables (CSV and Markdown), built from the same numbers."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np

from taskvec import store
from taskvec.analysis.pairs import conflict_summary, pairs_in
from taskvec.report.collect import METHODS, StudyResults, mean_intervals
from taskvec.report.paper import paper_mean

DIGITS = 4
OVERRIDES = 0.5  # the patched vector overrides the demonstrations where it follows B more than A, on half the prompts


def _round(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), DIGITS)


def _rounded(scores: dict[str, float]) -> dict[str, float | None]:
    return {key: _round(value) for key, value in scores.items()}


def _ci(bounds: tuple[float, float]) -> list[float | None]:
    return [_round(bounds[0]), _round(bounds[1])]


def _ratio(numerator: float, denominator: float) -> float | None:
    return _round(numerator / denominator) if denominator else None


def conflict_rows(study: StudyResults, model: str) -> list[dict]:
    """One row per pair, in the paper's form: accuracy against A's and B's answers, for ICL alone
    and for ICL with B's theta patched in."""
    table = study.analysis(model).conflicting
    if table is None:
        return []
    rows = []
    for task_a, task_b in pairs_in(study.tasks):
        mask = [a == task_a and b == task_b for a, b in zip(table.column("task_a").to_pylist(),
                                                           table.column("task_b").to_pylist())]
        summary = conflict_summary(table.filter(mask))
        overrides = summary["patched_b"] > summary["patched_a"] and summary["patched_b"] >= OVERRIDES
        rows.append({"model": model, "task_a": task_a, "task_b": task_b, "prompts": summary["n"],
                     "prompts_b_defined": summary["n_b_defined"], "icl_on_a": _round(summary["icl_a"]),
                     "icl_on_b": _round(summary["icl_b"]), "patched_on_a": _round(summary["patched_a"]),
                     "patched_on_b": _round(summary["patched_b"]), "overrides": overrides})
    return rows


def robustness_rows(study: StudyResults) -> list[dict]:
    rows = []
    for model in study.models:
        summary = study.analysis(model).robustness_summary
        if summary:
            rows.append({"model": model, "layer": summary["layer"], "task_vectors": summary["n_vectors"],
                         "tasks": summary["n_tasks"], "nearest_centroid_accuracy": summary["nearest_centroid_accuracy"],
                         "chance": _round(1 / summary["n_tasks"]),
                         "mean_within_task_distance": summary["mean_within_task_distance"],
                         "mean_across_task_distance": summary["mean_across_task_distance"]})
    return rows


def vocabulary_rows(study: StudyResults, top: int = 5) -> list[dict]:
    rows = []
    for model in study.models:
        table = study.analysis(model).vocabulary
        if table is None:
            continue
        data = table.to_pydict()
        for task in dict.fromkeys(data["task"]):
            picks = [i for i, t in enumerate(data["task"]) if t == task and data["rank"][i] <= top]
            rows.append({"model": model, "task": task, "layer": data["layer"][picks[0]],
                         "top_tokens": " | ".join(repr(data["token"][i]) for i in picks)})
    return rows


def metrics(study: StudyResults) -> dict:
    models = {}
    for model in study.models:
        tasks = {}
        for r in study.for_model(model):
            s = r.scores
            tasks[r.task] = {
                "category": r.category,
                **{m: _round(getattr(s, m)) for m in METHODS},
                **{f"{m}_ci": _ci(s.ci[m]) for m in METHODS},
                **{f"{m}_sd_over_seeds": _round(s.spread[m]) for m in METHODS},
                "tv_vs_icl_p": _round(s.tv_vs_icl.p_value),
                "tv_vs_icl_differs": s.tv_vs_icl.significant,
                "best_layer": s.best_layer,
                "best_layers": list(s.best_layers),
                "seeds": list(r.seeds),
                "n_test": s.n_test,
                "n_dev": r.metadata["sizes"]["dev"] * len(r.samples),
                "n_baseline": s.n_baseline,
                "n_pairs": r.n_pairs,
                "icl_works": r.icl_works,
                "sources": r.sources,
                "paper_task": r.metadata["task"].get("paper_task"),
            }
        means = study.means(model)
        kept_results = study.icl_works_results(model)
        n_kept, kept = study.icl_works_means(model)
        all_ci, kept_ci = mean_intervals(study.for_model(model)), mean_intervals(kept_results)
        entry = {
            "n_layers": study.n_layers(model),
            "tasks": tasks,
            "mean": {**_rounded(means), **{f"{m}_ci": _ci(all_ci[m]) for m in METHODS}},
            "tv_over_icl": _ratio(means["tv"], means["icl"]),
            "tv_over_icl_ci": _ci(all_ci["tv_over_icl"]),
            "by_category": {c: _rounded(m) for c, m in study.category_means(model).items()},
            "icl_works": {"n_tasks": n_kept, **_rounded(kept), "tv_over_icl": _ratio(kept["tv"], kept["icl"]),
                          "tv_over_icl_ci": _ci(kept_ci["tv_over_icl"]) if kept_ci else [None, None]},
        }
        conflicts = conflict_rows(study, model)
        if conflicts:
            entry["conflicting_tasks"] = {f"{r['task_a']}/{r['task_b']}": {k: r[k] for k in (
                "icl_on_a", "icl_on_b", "patched_on_a", "patched_on_b", "overrides", "prompts")} for r in conflicts}
        summary = study.analysis(model).robustness_summary
        if summary:
            entry["robustness"] = {k: summary[k] for k in ("layer", "n_vectors", "nearest_centroid_accuracy",
                                                           "mean_within_task_distance", "mean_across_task_distance")}
        models[model] = entry
    paper = {task: _rounded(paper_mean(study.paper_task(task))) for task in study.tasks if study.paper_task(task)}
    return {"models": models, "paper_mean_over_models": paper}


def accuracy_rows(study: StudyResults) -> list[dict]:
    rows = []
    for r in study.results:
        s = r.scores
        row = {"model": r.model, "task": r.task, "category": r.category}
        for m in METHODS:
            row[m] = _round(getattr(s, m))
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = _ci(s.ci[m])
            row[f"{m}_sd_over_seeds"] = _round(s.spread[m])
        row.update({"tv_vs_icl_p": _round(s.tv_vs_icl.p_value), "tv_vs_icl_differs": s.tv_vs_icl.significant,
                    "best_layer": s.best_layer, "best_layers": " ".join(map(str, s.best_layers)),
                    "n_layers": study.n_layers(r.model), "seeds": len(r.samples), "n_test": s.n_test,
                    "n_baseline": s.n_baseline, "n_pairs": r.n_pairs, "sources": r.sources})
        rows.append(row)
    return rows


def paper_rows(study: StudyResults) -> list[dict]:
    rows = []
    for task in study.tasks:
        paper_task = study.paper_task(task)
        mean = paper_mean(paper_task) if paper_task else None
        row = {"task": task, "paper_task": paper_task or ""}
        for key in METHODS:
            row[f"paper_{key}"] = _round(mean[key]) if mean else ""
        for model in study.models:
            result = study.get(model, task)
            for key in METHODS:
                row[f"{model}_{key}"] = _round(getattr(result.scores, key)) if result else ""
        rows.append(row)
    return rows


def by_layer_rows(study: StudyResults) -> list[dict]:
    return [
        {"model": r.model, "task": r.task, "category": r.category, "layer": layer, "dev_tv": _round(dev),
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


def markdown(rows: list[dict]) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value).replace("|", "\\|")

    header = list(rows[0])
    numeric = [all(isinstance(r[k], int | float) and not isinstance(r[k], bool) for r in rows) for k in header]
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
    lines += ["| " + " | ".join(cell(r[k]) for k in header) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_table(rows: list[dict], out_dir: Path, name: str) -> None:
    """``name``.csv and ``name``.md under ``out_dir``, with the same rows."""
    if not rows:
        raise ValueError(f"table {name} has no rows")
    write_csv(rows, out_dir / f"{name}.csv")
    store.write_text(markdown(rows), out_dir / f"{name}.md")


def dev_curve_by_category(study: StudyResults, model: str) -> dict[str, np.ndarray]:
    rows = study.for_model(model)
    categories = list(dict.fromkeys(r.category for r in rows))
    return {c: np.mean([r.scores.dev_by_layer for r in rows if r.category == c], axis=0) for c in categories}
