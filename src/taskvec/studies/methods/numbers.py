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
from taskvec.report.numbers import rounded, signed, spoken_list

PER_PROMPT = ("icl", "tv_per_prompt")
CONTROLS = ("random", "other_task", "shuffled_labels")
REFERENCES = {"bare": "bare query", "icl": "ICL", "tv_per_prompt": "task vector, per prompt"}  # rows no method makes
CONTROL_LABELS = {"random": "random, same norm", "other_task": "another task's", "shuffled_labels": "shuffled labels"}


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
        "one_off": 0.0,
        "labelled": k,
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
    groups = [[{m: comparison.correct[t, m, ""] for m in names}] for t in tasks]
    draws = task_bootstrap(groups)
    gap = (draws["icl"] - draws["bare"]).copy()
    gap[gap == 0] = np.nan
    costs = _costs(comparison, tasks)
    per_method = {}
    icl, bare = (float(np.mean([comparison.accuracy(t, m) for t in tasks])) for m in ("icl", "bare"))
    for method in names:
        mean = float(np.mean([comparison.accuracy(t, method) for t in tasks]))
        strict = [comparison.strict[t, method].mean() for t in tasks if (t, method) in comparison.strict]
        closed = (draws[method] - draws["bare"]) / gap
        entry = {
            "accuracy": rounded(mean),
            "accuracy_ci": [rounded(v) for v in interval(draws[method])],
            "strict": rounded(float(np.mean(strict))) if len(strict) == len(tasks) else None,
            "gap_closed": rounded((mean - bare) / (icl - bare)) if icl != bare else None,
            "gap_closed_ci": (
                [rounded(v) for v in interval(closed[np.isfinite(closed)])]
                if np.isfinite(closed).any()
                else [None, None]
            ),
            "per_query_cost": rounded(costs[method]["per_query"]),
            "kl_from_icl": rounded(costs[method].get("kl_from_icl")),
        }
        if method != "bare":
            entry.update(
                one_off_cost=rounded(costs[method]["one_off"]),
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
            entry["choices"] = {
                t: {
                    key: comparison.metadata["tasks"][t]["methods"][method][key]
                    for key in ("layer", "strength", "dev_accuracy")
                }
                for t in tasks
            }
        per_method[method] = entry
    out["methods"] = per_method
    reference = methods.reference(comparison.task_level)
    contrasts = [("tv_per_prompt", "icl")] + [
        (m, reference) for m in comparison.task_level if reference not in (None, m)
    ]
    # an estimate against the method it estimates: the same information and tuning budget
    contrasts += methods.estimated_pairs(comparison.task_level)
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
        }
    out["paired"] = paired
    agreement = head_agreement_metrics(comparison, tasks)
    if agreement:
        out["head_agreement"] = agreement
    return out


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
            }
        )
    return rows


def found_nothing(comparison: MethodComparison, task: str, method: str) -> bool:
    """Whether every configuration the method tried on the task's dev queries scored 0."""
    grid = comparison.metadata["tasks"][task]["methods"][method]["grid"]
    return not any(value for row in grid.values() for value in row if value is not None)


def summary_sentences(comparison: MethodComparison, metrics: dict) -> list[str]:
    """What the numbers say, computed from them."""
    tasks, entries = metrics.get("tasks", []), metrics.get("methods", {})
    if not entries:
        return [f"No task has both ICL working and a pool on {comparison.model}: nothing is compared."]
    out = [f"Over the {len(tasks)} tasks where ICL works and a pool exists ({spoken_list(tasks)})."]
    # ranked only among methods of the task-level task vector's tuning budget (configurations within a
    # factor of 2, nothing trained): the others are measured, not ranked
    reference_name = methods.reference(comparison.task_level)
    reference = entries.get(reference_name, {}).get("configurations") or 0
    levels = [
        m
        for m in comparison.task_level
        if entries[m]["gap_closed"] is not None
        and not entries[m].get("trainable_parameters")
        and reference <= 2 * (entries[m].get("configurations") or 0) <= 4 * reference
    ]
    if levels:
        best = max(levels, key=lambda m: entries[m]["gap_closed"])
        low, high = entries[best]["gap_closed_ci"]
        paired = metrics.get("paired", {}).get(f"{best}-{reference_name}")
        told = paired is None or paired["ci"][0] > 0 or paired["ci"][1] < 0
        out.append(
            f"Among the task-level methods of one tuning budget, the {label(best)} closes the most of the gap "
            "from the bare query to ICL: "
            f"{entries[best]['gap_closed']:.2f} [{low:.2f}, {high:.2f}]"
            + (
                "."
                if told
                else f", though its paired difference from the {label(reference_name)} (below) does not tell "
                "the two apart."
            )
        )
    for key, entry in metrics.get("paired", {}).items():
        a, b = key.split("-")
        low, high = entry["ci"]
        verdict = "a difference" if low > 0 or high < 0 else "no difference the interval can tell"
        tried = entry.get("configurations") or [None, None]
        budget = (
            f" The two tried {tried[0]} and {tried[1]} configurations on dev: tuning budgets that far apart make "
            "this a measurement, not a ranking."
            if all(tried) and max(tried) > 2 * min(tried)
            else ""
        )
        out.append(
            f"{label(a)[:1].upper() + label(a)[1:]} minus {label(b)}, paired on the same prompts: "
            f"{signed(entry['difference'])} "
            f"[{signed(low)}, {signed(high)}], {verdict}; McNemar with Holm: better on "
            f"{len(entry['better_on'])} tasks, worse on {len(entry['worse_on'])}.{budget}"
        )
    for method in comparison.task_level:
        training = entries[method].get("training")
        if training:
            out.append(
                f"The {label(method)} trains {entries[method]['trainable_parameters']} coefficients for "
                f"{training['steps']} steps on the pool's {training['examples']:.0f} pairs per task (mean loss "
                f"{training['first_loss']:.2f} at the first step, {training['last_loss']:.2f} over the last 10) "
                "and chooses nothing on dev: its budget is training, not configurations."
                + (f" {methods.get(method).control_note}" if method in methods.registry() else "")
            )
        empty = [t for t in tasks if found_nothing(comparison, t, method)]
        if empty and entries[method].get("configurations") == 1:
            out.append(f"The {label(method)} answers no dev query on {spoken_list(empty)}.")
        elif empty:
            out.append(
                f"The {label(method)}'s dev choice found no configuration that answers any dev query on "
                f"{spoken_list(empty)}: its configuration there is the tie rule's, not a finding."
            )
        controls = entries[method].get("controls", {})
        if controls:
            top = max(controls.values())
            out.append(
                f"The controls of the {label(method)} reach at most {top:.2f} (the method itself: "
                f"{entries[method]['accuracy']:.2f})."
            )
    agreement = metrics.get("head_agreement")
    if agreement:
        estimate_name, exact_name = methods.estimated_pairs(comparison.task_level)[0]
        paired = metrics.get("paired", {}).get(f"{estimate_name}-{exact_name}")
        exact, estimate = agreement["exact_cost"], agreement["attribution_cost"]
        rho = agreement["spearman_mean"]
        out.append(
            f"Attribution patching ranks the heads from one forward and one backward pass per prompt: over the "
            f"{len(agreement['tasks'])} tasks its rank correlation with the exact effects over all heads is "
            + ("undefined (constant effects)" if rho is None else f"{rho:.2f} on average")
            + f", and it finds {agreement['recall_mean']:.0%} of the exact top {agreement['heads']} heads; "
            f"the {label(exact_name)}'s one-off cost goes from {exact['forward']:.0f} ICL forwards to "
            f"{estimate['forward']:.0f} forward and {estimate['backward']:.0f} backward"
            + (
                f", and its accuracy changes by {signed(paired['difference'])} "
                f"[{signed(paired['ci'][0])}, {signed(paired['ci'][1])}] (paired)."
                if paired
                else "."
            )
        )
    if metrics.get("no_pool"):
        out.append(
            f"No pool on {spoken_list(metrics['no_pool'])}: every pair there is a dev or test query, so no "
            "task-level vector could be made without showing the model a test query."
        )
    return out
