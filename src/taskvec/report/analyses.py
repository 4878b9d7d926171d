"""The main report's sections on the analyses of theta: conflicting tasks, robustness (t-SNE and
distances) and the vocabulary projection."""

from __future__ import annotations

from taskvec.report.collect import ICL_WORKS, StudyResults
from taskvec.report.page import escape, image, names_text, number_text, table_row
from taskvec.report.tables import conflict_rows, robustness_rows, vocabulary_rows


def conflict_section(study: StudyResults, figures: dict) -> str:
    rows = [row for model in study.models for row in conflict_rows(study, model)]
    if not rows:
        return (
            "<h2 id='conflicting'>Conflicting tasks</h2><p>No pair of the paper's conflicting tasks has both "
            "tasks in this study.</p>"
        )

    def both(row: dict, key: str) -> tuple[str, str]:
        return (f"{number_text(row[key])} <span class='note'>/ {number_text(row[key + '_strict'])}</span>", "")

    body = "".join(
        table_row(
            [
                (escape(r["model"]), "l"),
                (escape(r["task_a"]), "l"),
                (escape(r["task_b"]), "l"),
                both(r, "icl_on_a"),
                both(r, "icl_on_b"),
                both(r, "patched_on_a"),
                both(r, "patched_on_b"),
                ("yes" if r["overrides"] else "no", ""),
                (str(r["prompts"]), ""),
                ("yes" if r["informative"] else "no", ""),
            ]
        )
        for r in rows
    )
    informative = [r for r in rows if r["informative"]]
    overridden = [r for r in informative if r["overrides"]]
    held = [r for r in informative if not r["overrides"]]
    empty = [r for r in rows if not r["informative"]]

    def name(r: dict) -> str:
        return f"{r['model']} {r['task_a']}/{r['task_b']}"

    text = (
        f"Of the {len(rows)} (model, pair) cases, {len(informative)} can show it (the demonstrations set up A: ICL "
        f"on A at least {ICL_WORKS}; and B's theta does B: B's task vector significantly above B's bare query); "
        f"in {len(overridden)} of them the patched vector overrides the demonstrations (it matches B's answer on "
        "at least half of the prompts and more often than A's)"
    )
    if held:
        text += ", not in " + "; ".join(
            f"{escape(name(r))} ({r['patched_on_b_count']} of {r['prompts_b_defined']} prompts follow B)" for r in held
        )
    text += "."
    translation = [r for r in held if "translation" in r["task_a"] or "translation" in r["task_b"]]
    if held and len(translation) == len(held):
        text += " Every case where it does not is a translation pair, the exception the paper reports too."
    if empty:
        text += (
            " The other cases cannot show anything: "
            + "; ".join(f"{escape(name(r))}, as {escape(r['uninformative_because'])}" for r in empty)
            + "."
        )
    images = "".join(
        f"<figure>{image(figures['conflicting_tasks'][m], f'{m}: conflicting tasks')}</figure>"
        for m in study.models
        if m in figures["conflicting_tasks"]
    )
    return f"""
<h2 id="conflicting">Conflicting tasks</h2>
<p>The demonstrations show task A; theta of task B is patched in at B's chosen layer. If theta carries the task,
the prediction follows B. In the paper it mostly does, translation being the exception. {text}</p>
<table><thead><tr><th class="l">model</th><th class="l">task A (demonstrations)</th><th class="l">task B (theta)</th>
<th>ICL: A</th><th>ICL: B</th><th>ICL + theta(B): A</th><th>ICL + theta(B): B</th><th>overrides</th>
<th>prompts</th><th>informative</th></tr></thead><tbody>{body}</tbody></table>
<p class="note">Accuracy against A's answers over A's test prompts (first split seed); against B's answers over the
prompts whose query B defines; each cell: paper metric / strict metric.</p>{images}
"""


def robustness_section(study: StudyResults, figures: dict) -> str:
    rows = robustness_rows(study)
    if not rows:
        return ""
    body = "".join(
        table_row(
            [
                (escape(r["model"]), "l"),
                (str(r["layer"]), ""),
                (str(r["task_vectors"]), ""),
                (f"{r['nearest_centroid_accuracy']:.2f}", ""),
                (f"{r['chance']:.2f}", ""),
                (f"{r['mean_within_task_distance']:.3f}", ""),
                (f"{r['mean_across_task_distance']:.3f}", ""),
            ]
        )
        for r in rows
    )
    images = "".join(
        f"<figure>{image(figures['tsne'][m], f'{m}: t-SNE of task vectors')}</figure>"
        f"<figure>{image(figures['distances'][m], f'{m}: distance histograms')}</figure>"
        for m in study.models
        if m in figures["tsne"]
    )
    return f"""
<h2 id="robustness">Robustness of theta</h2>
<p>Task vectors from different demonstrations of one task should lie close together and apart from other tasks'.
All dev and test task vectors (first split seed) are compared at one layer per model, the best layer of the mean
dev curve. How well theta identifies its task: leave-one-out nearest-centroid accuracy (cosine).</p>
<table><thead><tr><th class="l">model</th><th>layer</th><th>task vectors</th><th>nearest-centroid accuracy</th>
<th>chance</th><th>mean distance, same task</th><th>mean distance, other tasks</th></tr></thead>
<tbody>{body}</tbody></table>{images}
"""


def vocabulary_sentence(model: str, judgement: dict) -> str:
    """Whether the paper's observation (theta's top tokens name the task's outputs) holds for a model,
    at the chosen layer and at the last layer, from the criterion's counts."""
    parts = []
    for kind, label in (("chosen", "at each task's chosen layer"), ("last", "at the last layer")):
        j = judgement.get(kind)
        if not j:
            continue
        named, total = j["n_naming_outputs"], j["n_tasks"]
        verdict = (
            "holds for most tasks"
            if named * 2 > total
            else "holds for half of the tasks"
            if named * 2 == total
            else "does not hold for any task"
            if named == 0
            else "does not hold for most tasks"
        )
        reading = (
            f"so the paper's observation {verdict}"
            if kind == "chosen"
            else "as expected of the model's own predictions for the dummy queries"
        )
        beyond = ""
        if "n_beyond_random" in j:
            beyond = (
                f"; against {j['random_vectors']} random vectors of theta's norm per task (on average "
                f"{j['mean_random_share']:.1%} of their top tokens are the task's answer tokens), "
                f"{j['n_beyond_random']} of them name more of their outputs than 95% of the random vectors do"
                + (f" ({names_text(j['beyond_random'])})" if j["n_beyond_random"] else "")
            )
        parts.append(
            f"{label}, the top {j['top']} tokens of theta name the task's outputs for "
            f"{j['n_naming_outputs']} of {j['n_tasks']} tasks ({names_text(j['naming_outputs'])}); on average "
            f"{j['mean_own_share']:.0%} of them are the task's own answer tokens against "
            f"{j['mean_other_share']:.0%} for the other tasks' theta{beyond}, {reading}"
        )
    return f"{model}: " + "; ".join(parts) + "." if parts else ""


def vocabulary_section(study: StudyResults) -> str:
    rows = vocabulary_rows(study)
    if not rows:
        return ""
    body = "".join(
        table_row(
            [
                (escape(r["model"]), "l"),
                (escape(r["task"]), "l"),
                (escape(r["layer_kind"]), "l"),
                (str(r["layer"]), ""),
                (f"<code>{escape(r['top_tokens'])}</code>", "l"),
                (number_text(r["own_answer_share"]), ""),
                (number_text(r["other_tasks_share"]), ""),
                ("yes" if r["names_outputs"] else "no", ""),
                (number_text(r.get("random_share_95")), ""),
                ({True: "yes", False: "no"}.get(r.get("beyond_random"), "n/a"), ""),
            ]
        )
        for r in rows
    )
    judgements = {m: study.analysis(m).vocabulary_summary or {} for m in study.models}
    sentences = " ".join(escape(vocabulary_sentence(m, j)) for m, j in judgements.items())
    top = next((kind["top"] for j in judgements.values() for kind in j.values()), "")
    return f"""
<h2 id="vocabulary">Vocabulary projection</h2>
<p>Each task's mean theta (dev and test prompts, first split seed), read through the final norm and the unembedding
as if it were the last layer's output, at the task's chosen layer and at the last layer. The paper observes that the
top tokens name the task's outputs. Criterion: the share of the top {top} tokens that are first tokens of the task's
own answers (as text, case and surrounding space ignored), against the mean of the same share for the other tasks'
theta (answer tokens come up by chance too: letters, common words); theta names its outputs where its own share is
positive and higher. Other tasks' theta share the model's generic tokens, so each theta is also read against
random vectors of its norm (Gaussian, a fixed seed per task and layer): "beyond random" where theta meets the
criterion and its share is above the random vectors' 95th percentile. At the last layer, theta is the last
block's output for the dummy queries, so its top tokens
are the model's own ICL predictions for them: that they name the outputs there is expected; the paper's observation
concerns the middle layer where theta is patched.</p>
<p>{sentences}</p>
<table><thead><tr><th class="l">model</th><th class="l">task</th><th class="l">layer</th><th>index</th>
<th class="l">top 5 tokens (* answer token)</th><th>own share</th><th>others' share</th><th>names outputs</th>
<th>random, 95th pct.</th>
<th>beyond random</th></tr>
</thead><tbody>{body}</tbody></table>
"""
