"""The methods compared: numbers, table rows, sentences, figures and the report section, from one
model's ``compare-methods`` file (:mod:`taskvec.studies.methods.step`).

Methods that see different information are never ranked together: the *per-prompt* regime (ICL and
the task vector from the test prompt's own demonstrations) and the *task-level* regime (one vector
per task from the task's pool) each get their own paired comparison. Every mean is over the tasks
where ICL works (the study's filter) that have a pool, so that both regimes are read on the same tasks.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from taskvec import methods
from taskvec.analysis.stats import contrast_interval, holm, interval, mcnemar_exact, task_bootstrap, wilson_interval
from taskvec.report.numbers import rounded

PER_PROMPT = ("icl", "tv_per_prompt")
# every control a comparison file may hold, in the report's order (files written before the label
# controls were deranged hold shuffled_labels)
CONTROLS = ("random", "other_task", "deranged_labels", "random_labels", "shuffled_labels")
LABEL_CONTROLS = ("deranged_labels", "random_labels", "shuffled_labels")  # the mapping taken away, the answers kept
REFERENCES = {"bare": "bare query", "icl": "ICL", "tv_per_prompt": "task vector, per prompt"}  # rows no method makes
CONTROL_LABELS = {
    "random": "random, same norm",
    "other_task": "another task's",
    "deranged_labels": "deranged labels",
    "random_labels": "random labels",
    "shuffled_labels": "shuffled labels",
}
FAILED_SHARE = 0.5  # a method whose run fails a gate on more than this share of the tasks failed on the model


def label(method: str) -> str:
    """A row's label: a reference's, or the registered method's own."""
    return REFERENCES.get(method) or methods.label(method)


@dataclasses.dataclass(frozen=True)
class MethodComparison:
    """One model's comparison: per (task, method, control) each test prompt's first-token and strict
    correctness, in prompt order; and the file's metadata (pools, dev choices, counted costs)."""

    model: str
    correct: dict[tuple[str, str, str], np.ndarray]
    strict: dict[tuple[str, str], np.ndarray]
    metadata: dict

    @property
    def tasks(self) -> list[str]:
        return sorted(self.metadata["tasks"])

    @property
    def task_level(self) -> list[str]:
        return list(self.metadata["methods"])

    @property
    def pooled(self) -> list[str]:
        return [t for t in self.tasks if self.metadata["tasks"][t]["pool_sets"]]

    def accuracy(self, task: str, method: str, control: str = "") -> float | None:
        values = self.correct.get((task, method, control))
        return None if values is None else float(values.mean())


def read_methods(table: pa.Table, metadata: dict) -> MethodComparison:
    data = table.to_pydict()
    grouped: dict[tuple[str, str, str], list[tuple[int, bool, bool | None]]] = {}
    for task, index, method, control, correct, strict in zip(
        data["task"], data["index"], data["method"], data["control"], data["correct"], data["strict_correct"]
    ):
        grouped.setdefault((task, method, control), []).append((index, correct, strict))
    correct, strict = {}, {}
    for key, rows in grouped.items():
        rows.sort()
        correct[key] = np.array([c for _, c, _ in rows], dtype=bool)
        if key[2] == "" and all(s is not None for _, _, s in rows):
            strict[key[:2]] = np.array([s for _, _, s in rows], dtype=bool)
    return MethodComparison(metadata["model_name"], correct, strict, metadata)


def gate(comparison: MethodComparison, task: str, method: str) -> str | None:
    """Why the method's run on the task is no measurement, or None where it passes: a trained method
    whose first loss is above a uniform guess over the vocabulary (its training started broken) or
    whose dev accuracy ends below the bare query's; a method that chose among configurations none of
    which scored above the bare query on dev (the choice found nothing to choose)."""
    meta = comparison.metadata["tasks"][task]
    record = meta["methods"][method]
    bare = meta.get("bare_dev_accuracy")
    training = record.get("training")
    vocabulary = comparison.metadata.get("vocabulary_size")
    if training and vocabulary and training["first_loss"] > np.log(vocabulary):
        return (
            f"its first training loss, {training['first_loss']:.2f} nats, is above a uniform guess over the "
            f"{vocabulary:,} tokens ({np.log(vocabulary):.2f})"
        )
    if bare is None:  # a file from before the bare dev accuracy was recorded
        return None
    # the choice's accuracy is the best of every configuration it tried (a head count's, an aperture's too)
    best, tried = record["dev_accuracy"], record["configurations"]
    if training and best < bare:
        return f"its dev accuracy after training, {best:.2f}, is below the bare query's {bare:.2f}"
    if not training and best <= bare:
        return (
            f"none of its {tried} configurations scores above the bare query on dev (best {best:.2f}, bare {bare:.2f})"
        )
    return None


def gates(comparison: MethodComparison, tasks: list[str]) -> dict[str, dict]:
    """Per task-level method, the tasks whose run fails a gate (:func:`gate`, with the reason) and
    whether the method failed on the model (on more than :data:`FAILED_SHARE` of ``tasks``)."""
    out = {}
    for method in comparison.task_level:
        failed = {t: reason for t in tasks if (reason := gate(comparison, t, method))}
        out[method] = {"failed_on": failed, "failed": bool(tasks) and len(failed) > FAILED_SHARE * len(tasks)}
    return out


def compared_tasks(comparison: MethodComparison, icl_works: list[str]) -> list[str]:
    """The tasks every mean is over: ICL works there, and the task has a pool."""
    return [t for t in icl_works if t in comparison.pooled]


def _mean_of(values: list) -> float | None:
    """The mean, or None where any value is missing (a file from before the value was measured)."""
    return None if any(v is None for v in values) else float(np.mean(values))


def _costs(comparison: MethodComparison, tasks: list[str]) -> dict[str, dict]:
    """Per method, means over ``tasks``: per-query and one-off cost in units of one k-shot ICL forward
    (token positions through the model), labelled examples, configurations tried."""
    meta = comparison.metadata["tasks"]
    out: dict[str, dict] = {}

    def unit(task: str) -> float:
        return meta[task]["icl_positions_per_query"]

    k = comparison.metadata.get("k")
    out["bare"] = {
        "per_query": np.mean([meta[t]["bare_positions_per_query"] / unit(t) for t in tasks]),
        "kl_from_icl": _mean_of([meta[t].get("bare_kl_from_icl") for t in tasks]),
    }
    out["icl"] = {"per_query": 1.0, "one_off": 0.0, "labelled": k, "configurations": 0, "kl_from_icl": 0.0}
    out["tv_per_prompt"] = {
        "per_query": np.mean([meta[t]["tv_per_prompt_positions_per_query"] / unit(t) for t in tasks]),
        # its layer was chosen on the study's labelled dev prompts: they count; that choice's cost is the
        # study's, not measured here
        "one_off": None,
        "labelled": None if k is None else k + np.mean([meta[t]["dev_queries"] for t in tasks]),
        "configurations": comparison.metadata.get("n_layers"),
    }
    for method in comparison.task_level:
        records = [meta[t]["methods"][method] for t in tasks]
        out[method] = {
            "per_query": np.mean([r["positions_per_query"] / unit(t) for r, t in zip(records, tasks)]),
            "one_off": np.mean(
                [(r["extract_positions"] + r["choice_positions"]) / unit(t) for r, t in zip(records, tasks)]
            ),
            "one_off_backward": np.mean(
                [r.get("extract_backward_positions", 0) / unit(t) for r, t in zip(records, tasks)]
            ),
            # the dev queries count where they chose among configurations
            "labelled": np.mean(
                [
                    meta[t]["labelled_examples"] + meta[t]["dev_queries"] * (r["configurations"] > 1)
                    for r, t in zip(records, tasks)
                ]
            ),
            "kl_from_icl": _mean_of([r.get("kl_from_icl") for r in records]),
            "configurations": int(np.mean([r["configurations"] for r in records])),
        }
    return out


def model_metrics(comparison: MethodComparison, icl_works: list[str]) -> dict:
    """Per method, over the compared tasks: mean accuracy and strict accuracy, the share of the gap
    from the bare query to ICL it closes (two-level bootstrap intervals), the costs and the controls;
    the paired differences of each regime (bootstrap, Bonferroni over the regime's contrasts; McNemar
    per task, Holm over every task and contrast)."""
    tasks = compared_tasks(comparison, icl_works)
    out: dict = {"tasks": tasks, "no_pool": [t for t in comparison.tasks if t not in comparison.pooled]}
    if not tasks:
        return out
    names = ["bare", *PER_PROMPT, *comparison.task_level]
    relabelled = [
        (m, c)
        for m in ("icl", *comparison.task_level)
        for c in LABEL_CONTROLS
        if all((t, m, c) in comparison.correct for t in tasks)
    ]
    # the label controls ride in the same group: the same prompt draws (adding them moves no other draw)
    groups = [
        [
            {
                **{m: comparison.correct[t, m, ""] for m in names},
                **{f"{m}/{c}": comparison.correct[t, m, c] for m, c in relabelled},
            }
        ]
        for t in tasks
    ]
    draws = task_bootstrap(groups)
    outcome = gates(comparison, tasks)
    gap = (draws["icl"] - draws["bare"]).copy()
    gap[gap == 0] = np.nan
    costs = _costs(comparison, tasks)
    per_method = {}
    icl, bare = (float(np.mean([comparison.accuracy(t, m) for t in tasks])) for m in ("icl", "bare"))
    for method in names:
        mean = float(np.mean([comparison.accuracy(t, method) for t in tasks]))
        strict = [comparison.strict[t, method].mean() for t in tasks if (t, method) in comparison.strict]
        closed = (draws[method] - draws["bare"]) / gap
        reference_point = method in ("bare", "icl")  # 0 and 1 by definition: no interval
        entry = {
            "accuracy": rounded(mean),
            "accuracy_ci": [rounded(v) for v in interval(draws[method])],
            "strict": rounded(float(np.mean(strict))) if len(strict) == len(tasks) else None,
            "gap_closed": rounded((mean - bare) / (icl - bare)) if icl != bare else None,
            "gap_closed_ci": (
                [rounded(v) for v in interval(closed[np.isfinite(closed)])]
                if np.isfinite(closed).any() and not reference_point
                else [None, None]
            ),
            "per_query_cost": rounded(costs[method]["per_query"]),
            "kl_from_icl": rounded(costs[method].get("kl_from_icl")),
        }
        if method != "bare":
            entry.update(
                one_off_cost=rounded(costs[method]["one_off"]),  # None: not measured
                one_off_backward_cost=rounded(costs[method].get("one_off_backward", 0.0)),
                labelled_examples=rounded(costs[method]["labelled"]),
                configurations=costs[method]["configurations"],
                trainable_parameters=comparison.metadata["methods"].get(method, {}).get("trainable_parameters", 0),
            )
        if method in comparison.task_level:
            entry["controls"] = {
                c: rounded(float(np.mean([comparison.accuracy(t, method, c) for t in tasks])))
                for c in CONTROLS
                if all((t, method, c) in comparison.correct for t in tasks)
            }
            trained = [comparison.metadata["tasks"][t]["methods"][method].get("training") for t in tasks]
            if all(trained):
                means = {
                    k: rounded(float(np.mean([r[k] for r in trained]))) for k in ("examples", "first_loss", "last_loss")
                }
                entry["training"] = {"steps": trained[0]["steps"], **means}
            entry["gate"] = outcome[method]
            entry["choices"] = {
                t: {
                    key: comparison.metadata["tasks"][t]["methods"][method][key]
                    for key in ("layer", "strength", "dev_accuracy")
                }
                for t in tasks
            }
        shares = {
            c: _surviving(draws, method, c, mean, bare, [comparison.accuracy(t, method, c) for t in tasks])
            for m, c in relabelled
            if m == method
        }
        if shares:
            entry["answer_space"] = shares
        per_method[method] = entry
    out["methods"] = per_method
    out["failed"] = sorted(m for m, g in outcome.items() if g["failed"])
    reference = methods.reference(comparison.task_level)
    # a failed run is no measurement: no contrast names it
    passed = [m for m in comparison.task_level if m not in out["failed"]]
    contrasts = [("tv_per_prompt", "icl")] + [(m, reference) for m in passed if reference not in (None, m)]
    # an estimate against the method it estimates: the same information and tuning budget
    contrasts += [(a, b) for a, b in methods.estimated_pairs(comparison.task_level) if a in passed and b in passed]
    tests = [
        (a, b, t, mcnemar_exact(comparison.correct[t, a, ""], comparison.correct[t, b, ""]))
        for a, b in contrasts
        for t in tasks
    ]
    adjusted = holm([test.p_value for *_, test in tests])
    paired = {}
    for a, b in contrasts:
        family = 1 if b == "icl" else max(1, len(contrasts) - 1)
        difference = draws[a] - draws[b]
        mine = [(t, test, p) for (x, y, t, test), p in zip(tests, adjusted) if (x, y) == (a, b)]
        paired[f"{a}-{b}"] = {
            "difference": rounded(
                float(np.mean([comparison.accuracy(t, a) - comparison.accuracy(t, b) for t in tasks]))
            ),
            "ci": [rounded(v) for v in contrast_interval(difference, family)],
            "better_on": sorted(t for t, test, p in mine if p < 0.05 and test.only_first > test.only_second),
            "worse_on": sorted(t for t, test, p in mine if p < 0.05 and test.only_first < test.only_second),
            "configurations": [per_method[a].get("configurations"), per_method[b].get("configurations")],
            # the same prediction on every prompt of every task (two rankings that chose the same heads):
            # no test applies, and no interval is printed
            "identical": _identical(comparison, a, b, tasks),
            # right and wrong on the same prompts everywhere: the difference and its interval are 0 by
            # construction (no test applies)
            "same_scores": all(
                np.array_equal(comparison.correct[t, a, ""], comparison.correct[t, b, ""]) for t in tasks
            ),
        }
    out["paired"] = paired
    agreement = head_agreement_metrics(comparison, tasks)
    if agreement:
        out["head_agreement"] = agreement
    return out


def _identical(comparison: MethodComparison, a: str, b: str, tasks: list[str]) -> bool:
    """Whether two task-level methods made the same vector on every task: the same heads chosen (a
    head ranking and its estimate) and the same prediction on every test prompt."""
    meta = comparison.metadata["tasks"]
    same_heads = all(
        a in meta[t]["methods"]
        and b in meta[t]["methods"]
        and meta[t]["methods"][a].get("heads") is not None
        and meta[t]["methods"][a].get("heads") == meta[t]["methods"][b].get("heads")
        for t in tasks
    )
    return same_heads and all(np.array_equal(comparison.correct[t, a, ""], comparison.correct[t, b, ""]) for t in tasks)


def _surviving(draws: dict, method: str, control: str, mean: float, bare: float, accuracies: list) -> dict:
    """The share of the method's gap over the bare query that survives the label control: (control -
    bare) / (method - bare), with its bootstrap interval (the same draws); no share where the method's
    own gap is not told apart from 0 (its interval reaches 0: there is nothing to survive, and a ratio
    of two noises is no measurement)."""
    control_mean = float(np.mean(accuracies))
    gap = draws[method] - draws["bare"]
    if mean == bare or interval(gap)[0] <= 0:
        return {"accuracy": rounded(control_mean), "share": None, "share_ci": [None, None]}
    gap[np.abs(gap) < 1e-12] = np.nan
    share = (draws[f"{method}/{control}"] - draws["bare"]) / gap
    finite = share[np.isfinite(share)]
    return {
        "accuracy": rounded(control_mean),
        "share": rounded((control_mean - bare) / (mean - bare)),
        "share_ci": [rounded(v) for v in interval(finite)] if finite.size else [None, None],
    }


def head_agreement_metrics(comparison: MethodComparison, tasks: list[str]) -> dict | None:
    """How attribution patching's head ranking agrees with the exact one, over ``tasks``: per task and
    on average the Spearman rank correlation over all heads and the recall of the exact top heads;
    the one-off cost of each ranking's function vector (forward and backward token positions, in
    k-shot ICL forwards); the paired difference of the two vectors' accuracy is in ``paired``."""
    meta = comparison.metadata["tasks"]
    found = [t for t in tasks if "head_agreement" in meta[t]]
    pairs = methods.estimated_pairs(comparison.task_level)
    if not found or not pairs:
        return None
    estimate, exact = pairs[0]
    per_task = {t: {k: meta[t]["head_agreement"][k] for k in ("spearman", "recall")} for t in found}
    rhos = [v["spearman"] for v in per_task.values() if v["spearman"] is not None]

    def cost(method: str, key: str) -> float:
        return rounded(
            float(np.mean([meta[t]["methods"][method][key] / meta[t]["icl_positions_per_query"] for t in found]))
        )

    return {
        "tasks": per_task,
        "spearman_mean": rounded(float(np.mean(rhos))) if rhos else None,
        "spearman_range": [rounded(min(rhos)), rounded(max(rhos))] if rhos else None,
        "recall_mean": rounded(float(np.mean([v["recall"] for v in per_task.values()]))),
        "heads": len(meta[found[0]]["head_agreement"]["exact_heads"]),
        "prompts": meta[found[0]]["head_agreement"]["prompts"],
        "exact_cost": {"forward": cost(exact, "extract_positions"), "backward": 0.0},
        "attribution_cost": {
            "forward": cost(estimate, "extract_positions"),
            "backward": cost(estimate, "extract_backward_positions"),
        },
    }


def task_metrics(comparison: MethodComparison) -> dict[str, dict]:
    """Per task, each method's (and control's) accuracy on its test prompts with its Wilson interval."""
    out: dict[str, dict] = {}
    for (task, method, control), values in sorted(comparison.correct.items()):
        name = method if not control else f"{method}/{control}"
        accuracy = float(values.mean())
        out.setdefault(task, {}).setdefault("methods", {})[name] = {
            "accuracy": rounded(accuracy),
            "ci": [rounded(v) for v in wilson_interval(accuracy, len(values))],
        }
    return out


def table_rows(comparison: MethodComparison, metrics: dict) -> list[dict]:
    rows = []
    for method, entry in metrics.get("methods", {}).items():
        regime = "reference" if method == "bare" else ("per prompt" if method in PER_PROMPT else "task level")
        rows.append(
            {
                "model": comparison.model,
                "regime": regime,
                "method": method,
                "gap_closed": entry["gap_closed"],
                "gap_closed_low": entry["gap_closed_ci"][0],
                "gap_closed_high": entry["gap_closed_ci"][1],
                "accuracy": entry["accuracy"],
                "strict": entry["strict"],
                "kl_from_icl": entry.get("kl_from_icl"),
                "per_query_cost": entry["per_query_cost"],
                "one_off_cost": entry.get("one_off_cost"),
                "one_off_backward_cost": entry.get("one_off_backward_cost"),
                "labelled_examples": entry.get("labelled_examples"),
                "configurations": entry.get("configurations"),
                "trainable_parameters": entry.get("trainable_parameters"),
                "gate": _gate_text(entry.get("gate"), len(metrics.get("tasks", []))),
            }
        )
    return rows


def _gate_text(outcome: dict | None, tasks: int) -> str:
    """A method's gate outcome as the table gives it ("" where it has no gates: the references)."""
    if outcome is None:
        return ""
    failed = len(outcome["failed_on"])
    if outcome["failed"]:
        return f"failed on {failed} of {tasks}"
    return "passed" if not failed else f"passed; fails on {failed} of {tasks}"


def found_nothing(comparison: MethodComparison, task: str, method: str) -> bool:
    """Whether every configuration the method tried on the task's dev queries scored 0."""
    grid = comparison.metadata["tasks"][task]["methods"][method]["grid"]
    return not any(value for row in grid.values() for value in row if value is not None)
