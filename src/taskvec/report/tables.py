"""metrics.json and the tables (CSV and Markdown), built from the same numbers."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path

import numpy as np

from taskvec import store
from taskvec.analysis.pairs import conflict_summary, pairs_in
from taskvec.analysis.stats import ALPHA, two_proportion_p
from taskvec.report.collect import ICL_WORKS, METHODS, METRICS, StudyResults, mean_intervals
from taskvec.report.numbers import rounded
from taskvec.report.paper import paper_mean

OVERRIDES = 0.5  # the patched vector overrides the demonstrations where it follows B more than A, on half the prompts


def _rounded(scores: dict[str, float]) -> dict[str, float | None]:
    return {key: rounded(value) for key, value in scores.items()}


def _ci(bounds: tuple[float, float]) -> list[float | None]:
    return [rounded(bounds[0]), rounded(bounds[1])]


def _ratio(numerator: float, denominator: float) -> float | None:
    return rounded(numerator / denominator) if denominator else None


def conflict_informative(study: StudyResults, model: str, task_a: str, task_b: str, icl_on_a: float) -> dict:
    """Whether a conflicting pair can show theta overriding the demonstrations: the demonstrations must
    set up A (ICL on A at least the filter's ``ICL_WORKS``), and B's theta must do B beyond what the bare
    query does (B's task vector above B's baseline, two-proportion z-test at ``ALPHA``: their prompts
    are different samples). Where either fails, following B or not says nothing about theta."""
    reasons = []
    if not icl_on_a >= ICL_WORKS:
        reasons.append(f"ICL does not do {task_a} ({icl_on_a:.2f})")
    b = study.get(model, task_b)
    if b is not None:
        s = b.scores
        p = two_proportion_p(s.tv, s.n_test, s.baseline, s.n_baseline_distinct)
        if not (s.tv > s.baseline and p < ALPHA):
            reasons.append(
                f"{task_b}'s theta does no more than its bare query (task vector {s.tv:.2f}, baseline {s.baseline:.2f})"
            )
    return {"informative": not reasons, "uninformative_because": "; ".join(reasons)}


def conflict_rows(study: StudyResults, model: str) -> list[dict]:
    """One row per pair, in the paper's form: accuracy against A's and B's answers, for ICL alone
    and for ICL with B's theta patched in."""
    table = study.analysis(model).conflicting
    if table is None:
        return []
    rows = []
    for task_a, task_b in pairs_in(study.tasks):
        mask = [
            a == task_a and b == task_b
            for a, b in zip(table.column("task_a").to_pylist(), table.column("task_b").to_pylist())
        ]
        summary = conflict_summary(table.filter(mask))
        overrides = summary["patched_b"] > summary["patched_a"] and summary["patched_b"] >= OVERRIDES
        rows.append(
            {
                "model": model,
                "task_a": task_a,
                "task_b": task_b,
                "prompts": summary["n"],
                "prompts_b_defined": summary["n_b_defined"],
                "patched_on_b_count": round(summary["patched_b"] * summary["n_b_defined"]),
                **conflict_informative(study, model, task_a, task_b, summary["icl_a"]),
                "icl_on_a": rounded(summary["icl_a"]),
                "icl_on_b": rounded(summary["icl_b"]),
                "patched_on_a": rounded(summary["patched_a"]),
                "patched_on_b": rounded(summary["patched_b"]),
                "overrides": overrides,
                "icl_on_a_strict": rounded(summary["icl_strict_a"]),
                "icl_on_b_strict": rounded(summary["icl_strict_b"]),
                "patched_on_a_strict": rounded(summary["patched_strict_a"]),
                "patched_on_b_strict": rounded(summary["patched_strict_b"]),
            }
        )
    return rows


def robustness_rows(study: StudyResults) -> list[dict]:
    rows = []
    for model in study.models:
        summary = study.analysis(model).robustness_summary
        if summary:
            rows.append(
                {
                    "model": model,
                    "layer": summary["layer"],
                    "task_vectors": summary["n_vectors"],
                    "tasks": summary["n_tasks"],
                    "nearest_centroid_accuracy": summary["nearest_centroid_accuracy"],
                    "chance": rounded(1 / summary["n_tasks"]),
                    "mean_within_task_distance": summary["mean_within_task_distance"],
                    "mean_across_task_distance": summary["mean_across_task_distance"],
                }
            )
    return rows


def vocabulary_rows(study: StudyResults, top: int = 5) -> list[dict]:
    """Per model, task and layer kind (the chosen layer, the last layer): the top tokens of the mean
    theta (answer tokens of the task marked with *), and the criterion's shares."""
    rows = []
    for model in study.models:
        analyses = study.analysis(model)
        if analyses.vocabulary is None:
            continue
        data = analyses.vocabulary.to_pydict()
        judgement = analyses.vocabulary_summary or {}
        for task in dict.fromkeys(data["task"]):
            for kind in ("chosen", "last"):
                picks = [
                    i
                    for i, (t, k) in enumerate(zip(data["task"], data["layer_kind"]))
                    if t == task and k == kind and data["rank"][i] <= top
                ]
                if not picks:
                    continue
                shares = judgement.get(kind, {}).get("tasks", {}).get(task, {})
                rows.append(
                    {
                        "model": model,
                        "task": task,
                        "layer_kind": kind,
                        "layer": data["layer"][picks[0]],
                        "top_tokens": " | ".join(
                            repr(data["token"][i]) + ("*" if data["answer_token"][i] else "") for i in picks
                        ),
                        "own_answer_share": shares.get("own_share"),
                        "other_tasks_share": shares.get("other_share"),
                        "names_outputs": shares.get("names_outputs"),
                        "random_share_95": shares.get("random_share_95"),
                        "beyond_random": shares.get("beyond_random"),
                    }
                )
    return rows


def vocabulary_judgement(study: StudyResults, model: str) -> dict | None:
    """Per layer kind: how many tasks' mean theta names the task's outputs among its top tokens."""
    judgement = study.analysis(model).vocabulary_summary
    if not judgement:
        return None
    return {
        kind: {
            key: value[key]
            for key in (
                "top",
                "n_tasks",
                "n_naming_outputs",
                "naming_outputs",
                "mean_own_share",
                "mean_other_share",
                "random_vectors",
                "n_beyond_random",
                "beyond_random",
                "mean_random_share",
            )
            if key in value
        }
        for kind, value in judgement.items()
    }


def metrics(study: StudyResults) -> dict:
    """Every number of the report. Per task: the paper's first-token metric (``baseline``, ``icl``,
    ``tv``) and the strict metric (``*_strict``), each with its 95% Wilson interval (``*_ci``)."""
    models = {}
    for model in study.models:
        tasks = {}
        for r in study.for_model(model):
            s = r.scores
            tasks[r.task] = {
                "category": r.category,
                **{m: rounded(getattr(s, m)) for m in METRICS},
                **{f"{m}_ci": _ci(s.ci[m]) for m in METRICS},
                **{f"{m}_sd_over_seeds": rounded(s.spread[m]) for m in METRICS},
                "tv_vs_icl_p": rounded(s.tv_vs_icl.p_value),
                "tv_vs_icl_p_holm": rounded(r.p_holm),
                "tv_vs_icl": r.direction,
                "tv_vs_icl_strict_p": rounded(s.tv_vs_icl_strict.p_value) if s.tv_vs_icl_strict else None,
                "best_layer": s.best_layer,
                "best_layers": list(s.best_layers),
                "layers_work": list(s.layers_work),
                "seeds": list(r.seeds),
                "n_test": s.n_test,
                "n_dev": r.info.sizes.dev * len(r.samples),
                "n_baseline": s.n_baseline,
                "n_baseline_distinct": s.n_baseline_distinct,
                "n_pairs": r.n_pairs,
                "rules": dataclasses.asdict(r.info.task.rules),
                "leading_space": r.leading_space,
                "icl_works": r.icl_works,
                "sources": r.sources,
                "paper_task": r.info.task.paper_task,
            }
            if r.diagnosis:
                tasks[r.task]["tv_strict_failures_first_sampling"] = r.diagnosis["tv_strict"]
            if r.direction == "above" and r.diagnosis:
                errors = r.diagnosis["icl_errors"]
                tasks[r.task]["icl_errors_first_sampling"] = {
                    **{k: v for k, v in errors.items() if k != "most_frequent"},
                    "most_frequent": [[prediction, count] for prediction, count in errors["most_frequent"]],
                }
        means = study.means(model)
        kept_results = study.icl_works_results(model)
        n_kept, kept = study.icl_works_means(model)
        all_ci, kept_ci = mean_intervals(study.for_model(model)), mean_intervals(kept_results)

        def share(ci: dict, scores: dict, suffix: str = "") -> dict:
            return {
                f"tv_over_icl{suffix}": _ratio(scores[f"tv{suffix}"], scores[f"icl{suffix}"]),
                f"tv_over_icl{suffix}_ci": _ci(ci.get(f"tv_over_icl{suffix}", (None, None))),
            }

        entry = {
            "n_layers": study.n_layers(model),
            "tasks": tasks,
            "mean": {**_rounded(means), **{f"{m}_ci": _ci(all_ci.get(m, (None, None))) for m in METRICS}},
            **share(all_ci, means),
            **share(all_ci, means, "_strict"),
            "by_category": {c: _rounded(m) for c, m in study.category_means(model).items()},
            "icl_works": {
                "n_tasks": n_kept,
                **_rounded(kept),
                **{f"{m}_ci": _ci(kept_ci.get(m, (None, None))) for m in METRICS},
                **share(kept_ci, kept),
                **share(kept_ci, kept, "_strict"),
            },
            "tv_vs_icl_holm": {
                direction: [r.task for r in study.for_model(model) if r.direction == direction]
                for direction in ("above", "below", "within noise")
            },
        }
        conflicts = conflict_rows(study, model)
        if conflicts:
            entry["conflicting_tasks"] = {
                f"{r['task_a']}/{r['task_b']}": {k: v for k, v in r.items() if k not in ("model", "task_a", "task_b")}
                for r in conflicts
            }
        summary = study.analysis(model).robustness_summary
        if summary:
            entry["robustness"] = {
                k: summary[k]
                for k in (
                    "layer",
                    "n_vectors",
                    "nearest_centroid_accuracy",
                    "mean_within_task_distance",
                    "mean_across_task_distance",
                )
            }
        vocabulary = vocabulary_judgement(study, model)
        if vocabulary:
            entry["vocabulary_projection"] = vocabulary
        models[model] = entry
    paper = {task: _rounded(paper_mean(study.paper_task(task))) for task in study.tasks if study.paper_task(task)}
    return {
        "models": models,
        "paper_mean_over_models": paper,
        "notes": {
            "intervals": "per task: 95% Wilson score interval (baseline: over its distinct queries); means "
            "and tv_over_icl: two-level bootstrap over tasks and prompts, conditional on the "
            "layer chosen on dev",
            "tv_vs_icl_p_holm": "McNemar's exact test, Holm-adjusted over every (model, task) of the study",
            "metrics": "baseline/icl/tv: the paper's first-token rule per task; *_strict: greedy "
            "generation to the separator, exact match against every valid answer",
        },
    }


def accuracy_rows(study: StudyResults) -> list[dict]:
    rows = []
    for r in study.results:
        s = r.scores
        row = {"model": r.model, "task": r.task, "category": r.category}
        for m in METRICS:
            row[m] = rounded(getattr(s, m))
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = _ci(s.ci[m])
            row[f"{m}_sd_over_seeds"] = rounded(s.spread[m])
        row.update(
            {
                "tv_vs_icl_p": rounded(s.tv_vs_icl.p_value),
                "tv_vs_icl_p_holm": rounded(r.p_holm),
                "tv_vs_icl": r.direction,
                "best_layer": s.best_layer,
                "best_layers": " ".join(map(str, s.best_layers)),
                "n_layers": study.n_layers(r.model),
                "seeds": len(r.samples),
                "n_test": s.n_test,
                "n_baseline": s.n_baseline,
                "n_baseline_distinct": s.n_baseline_distinct,
                "n_pairs": r.n_pairs,
                "scoring": r.info.task.rules.scoring,
                "leading_space": r.leading_space,
                "sources": r.sources,
            }
        )
        rows.append(row)
    return rows


def paper_rows(study: StudyResults) -> list[dict]:
    rows = []
    for task in study.tasks:
        paper_task = study.paper_task(task)
        mean = paper_mean(paper_task) if paper_task else None
        row = {"task": task, "paper_task": paper_task or "", "differs_from_paper": study.differs(task)}
        for key in METHODS:
            row[f"paper_{key}"] = rounded(mean[key]) if mean else ""
        for model in study.models:
            result = study.get(model, task)
            for key in METHODS:
                row[f"{model}_{key}"] = rounded(getattr(result.scores, key)) if result else ""
        rows.append(row)
    return rows


def by_layer_rows(study: StudyResults) -> list[dict]:
    return [
        {
            "model": r.model,
            "task": r.task,
            "category": r.category,
            "layer": layer,
            "dev_tv": rounded(dev),
            "chosen": layer == r.scores.best_layer,
        }
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
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
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
