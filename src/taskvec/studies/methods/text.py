"""The methods comparison's sentences: what the numbers of :func:`taskvec.studies.methods.numbers.model_metrics`
say, computed from them (failed runs named, rankings only within one tuning budget, paired
differences with their verdicts, what survives without the mapping)."""

from __future__ import annotations

from taskvec import methods
from taskvec.report.numbers import signed, spoken_list
from taskvec.studies.methods.numbers import CONTROL_LABELS, LABEL_CONTROLS, MethodComparison, found_nothing, label


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
    failed = metrics.get("failed", [])
    out += failure_sentences(comparison, entries, tasks)
    levels = [
        m
        for m in comparison.task_level
        if m not in failed
        and entries[m]["gap_closed"] is not None
        and not entries[m].get("trainable_parameters")
        and reference <= 2 * (entries[m].get("configurations") or 0) <= 4 * reference
    ]
    if levels:
        best = max(levels, key=lambda m: entries[m]["gap_closed"])
        low, high = entries[best]["gap_closed_ci"]
        paired = metrics.get("paired", {}).get(f"{best}-{reference_name}")
        told = paired is None or paired["ci"][0] > 0 or paired["ci"][1] < 0
        # every method is paired with the reference: a best other than it is set against it alone
        others = [] if best == reference_name else [m for m in levels if m not in (best, reference_name)]
        out.append(
            f"Among the task-level methods of one tuning budget, the {label(best)} has the highest point estimate "
            "of the gap closed from the bare query to ICL: "
            f"{entries[best]['gap_closed']:.2f} [{low:.2f}, {high:.2f}]"
            + (
                ""
                if told or best == reference_name
                else f", though its paired difference from the {label(reference_name)} (below) does not tell "
                "the two apart"
            )
            + (
                f"; no paired test sets it against the {spoken_list([label(m) for m in others])}, so this ranks "
                "nothing."
                if others
                else "."
            )
        )
    for key, entry in metrics.get("paired", {}).items():
        a, b = key.split("-")
        low, high = entry["ci"]
        if entry.get("identical"):
            out.append(
                f"{label(a)[:1].upper() + label(a)[1:]} and {label(b)} chose the same heads on every task: the same "
                "vector, the same prediction on every test prompt; no test applies."
            )
            continue
        if entry.get("same_scores"):
            out.append(
                f"{label(a)[:1].upper() + label(a)[1:]} and {label(b)} score alike on every test prompt of every "
                "task: no difference to test."
            )
            continue
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
        gated = entries[method].get("gate", {}).get("failed_on", {})  # already said, with the reason
        empty = [t for t in tasks if found_nothing(comparison, t, method) and t not in gated]
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
    out += answer_space_sentences(entries, comparison.task_level, failed)
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
            f"the head ranking's one-off cost goes from {exact['forward']:.0f} ICL forwards to "
            f"{estimate['forward']:.0f} forward and {estimate['backward']:.0f} backward (the ranking only; the "
            "table's one-off cost adds the vector and the dev choice)"
            + (
                f", and its accuracy changes by {signed(paired['difference'])} "
                f"[{signed(paired['ci'][0])}, {signed(paired['ci'][1])}] (paired)."
                if paired and not paired.get("identical")
                else "."
            )
        )
    if metrics.get("no_pool"):
        out.append(
            f"No pool on {spoken_list(metrics['no_pool'])}: every pair there is a dev or test query, so no "
            "task-level vector could be made without showing the model a test query."
        )
    return out


def failure_sentences(comparison: MethodComparison, entries: dict, tasks: list[str]) -> list[str]:
    """Each method whose run fails a gate: failed on the model (no measurement), or on some tasks."""
    out = []
    for method in comparison.task_level:
        outcome = entries[method].get("gate", {})
        failures = outcome.get("failed_on", {})
        if not failures:
            continue
        first = next(iter(failures))
        where = failures[first] if len(failures) == 1 else f"on {first}, {failures[first]}"
        if outcome.get("failed"):
            out.append(
                f"The {label(method)} failed on {comparison.model}: its run fails a gate on {len(failures)} of the "
                f"{len(tasks)} tasks ({where}). A failed run is no measurement: its row is marked failed, and no "
                "contrast or ranking names it."
            )
        else:
            out.append(
                f"The {label(method)}'s run fails a gate on {spoken_list(list(failures))} ({where}); its means "
                "include those tasks."
            )
    return out


def answer_space_sentences(entries: dict, task_level: list[str], failed: list[str]) -> list[str]:
    """Mapping or answer space: how much of each method's gap over the bare query survives when the
    demonstrations' labels are deranged (or drawn at random from the task's answers), beside how much
    of ICL's survives under the same control; a sentence per control, computed from the shares."""

    def text(share: dict) -> str:
        low, high = share["share_ci"]
        return f"{share['share']:.0%}" + ("" if low is None else f" [{low:.0%}, {high:.0%}]")

    def most_survives(share: dict | None) -> bool:
        return bool(share) and share["share_ci"][0] is not None and share["share_ci"][0] > 0.5

    out = []
    for control in LABEL_CONTROLS:
        icl = entries.get("icl", {}).get("answer_space", {}).get(control)
        shares = {
            m: entries[m]["answer_space"][control]
            for m in task_level
            if m not in failed and (entries[m].get("answer_space", {}).get(control) or {}).get("share") is not None
        }
        if not shares:
            continue
        listed = "; ".join(f"the {label(m)} {text(v)}" for m, v in shares.items())
        known = icl is not None and icl["share"] is not None
        sentence = (
            f"With {CONTROL_LABELS[control]}, the share of each gap that survives: "
            + (f"ICL {text(icl)}; " if known else "")
            + f"{listed}."
        )
        most = [label(m) for m, v in shares.items() if most_survives(v)]
        if most:
            sentence += (
                f" More than half of the gap survives without the mapping for {spoken_list(most)}: on these "
                "tasks such a vector carries the answer space and the format more than the input-output mapping"
                + (", as ICL does." if most_survives(icl) else ".")
            )
        out.append(sentence)
    return out


def findings(model: str, metrics: dict) -> list[str]:
    """The summary's lines for one model's comparison (``models.<model>.methods`` of metrics.json)."""
    entries, failed = metrics.get("methods") or {}, metrics.get("failed", [])
    if not entries:
        return []
    passing = [m for m, e in entries.items() if "gate" in e and m not in failed and e["gap_closed"] is not None]
    out = []
    if passing:
        gaps = [entries[m]["gap_closed"] for m in passing]
        strict = [entries[m]["strict"] for m in passing if entries[m].get("strict") is not None]
        icl_strict = entries.get("icl", {}).get("strict")
        line = (
            f"{model}: the {len(passing)} task-level methods whose runs pass their gates close {min(gaps):.2f} to "
            f"{max(gaps):.2f} of the gap from the bare query to ICL by the first token"
        )
        if strict and icl_strict is not None:
            line += f"; by the whole answer they score {min(strict):.2f} to {max(strict):.2f}, ICL {icl_strict:.2f}"
        out.append(line + ".")
    if failed:
        out.append(f"{model}: failed runs, no measurement: {spoken_list([label(m) for m in failed])}.")
    reference = methods.reference([m for m in entries if "gate" in entries[m]])
    shares = (entries.get(reference) or {}).get("answer_space", {}).get("deranged_labels")
    icl = entries.get("icl", {}).get("answer_space", {}).get("deranged_labels")
    if shares and icl and shares["share"] is not None and icl["share"] is not None:
        out.append(
            f"{model}: with deranged labels the {label(reference)} keeps {shares['share']:.0%} of its gap, ICL "
            f"{icl['share']:.0%} of its own (intervals in Methods compared)."
        )
    return out
