"""The self-contained HTML report (inline CSS, figures as data URIs: it opens from disk)."""

from __future__ import annotations

import base64
import dataclasses
import html
import importlib.metadata

from taskvec.analysis.stats import ALPHA, BOOTSTRAP_RESAMPLES
from taskvec.report.collect import ICL_WORKS, METHODS, StudyResults, TaskResult, mean_intervals, mean_scores
from taskvec.report.paper import CITATION, paper_mean, paper_models
from taskvec.report.tables import conflict_rows, robustness_rows, vocabulary_rows

PACKAGES = (
    "taskvec",
    "torch",
    "transformers",
    "tokenizers",
    "gguf",
    "safetensors",
    "pyarrow",
    "numpy",
    "scikit-learn",
    "matplotlib",
    "snakemake",
    "dvc",
)
HOLDS = 0.75  # the task vector "holds" where it keeps at least this share of ICL accuracy

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:64rem;margin:2rem auto;
padding:0 1rem;color:#1a1a1a;line-height:1.5}
h1{font-size:1.7rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd}h3{margin-top:1.6rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.88rem}
th,td{padding:.2rem .6rem;border-bottom:1px solid #e4e4e4;text-align:right;vertical-align:top}
th.l,td.l{text-align:left}
tr.mean td{font-weight:600;border-top:2px solid #999}
img{max-width:100%}code{background:#f3f3f3;padding:0 .2rem}
.note{color:#555;font-size:.9rem}.ns{color:#777}nav a{margin-right:.8rem}
figure{margin:1rem 0}figcaption{max-width:48rem}td.src{font-size:.78rem;color:#555;text-align:left}
@media print{body{max-width:none}h2{page-break-before:auto}}
"""


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _e(text) -> str:
    return html.escape(str(text))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _row(cells: list[tuple[str, str]], css: str = "") -> str:
    """cells: (text, class) pairs; text is already escaped."""
    attrs = f" class='{css}'" if css else ""
    return f"<tr{attrs}>" + "".join(f"<td class='{c}'>{t}</td>" if c else f"<td>{t}</td>" for t, c in cells) + "</tr>"


def _ci(bounds: tuple[float, float]) -> str:
    return f"[{bounds[0]:.2f}, {bounds[1]:.2f}]"


def _img(figure: dict[str, bytes], alt: str) -> str:
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{base64.b64encode(figure['png']).decode()}'>"


def _ratio(tv: float, icl: float) -> str:
    return f"{tv / icl:.0%}" if icl else "n/a"


def _share_ci(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return f"{low:.0%} to {high:.0%}" if low == low and high == high else "n/a"


def _p(result: TaskResult) -> str:
    test = result.scores.tv_vs_icl
    if result.direction != "within noise":
        return f"{test.p_value:.2g} / {result.p_holm:.2g}"
    return f"<span class='ns'>{test.p_value:.2g} / {result.p_holm:.2g} n.s.</span>"


def _names(tasks: list[str]) -> str:
    return ", ".join(tasks) if tasks else "none"


def direction_sentence(results: list[TaskResult]) -> str:
    """Which tasks have the task vector significantly above ICL, which below, and which within the
    noise (Holm-adjusted McNemar), each named."""
    groups = {d: [r.task for r in results if r.direction == d] for d in ("above", "below", "within noise")}
    parts = [
        f"significantly above ICL on {len(groups['above'])} ({_names(groups['above'])})",
        f"significantly below on {len(groups['below'])} ({_names(groups['below'])})",
        f"within the noise on {len(groups['within noise'])}",
    ]
    return (
        f"Of these {len(results)} tasks, the task vector is {parts[0]}, {parts[1]}, and {parts[2]} "
        f"(McNemar's exact test, p &lt; {ALPHA} after Holm's adjustment over every model and task of the "
        "study)."
    )


def strict_failure_sentence(results: list[TaskResult]) -> str:
    """How the task vector fails the strict metric where its first token is right (first sampling)."""
    counts = [r.diagnosis["tv_strict"] for r in results if r.diagnosis]
    failures = sum(c["first_token_right_strict_wrong"] for c in counts)
    if not failures:
        return ""
    goes_on = sum(c["answer_then_more"] for c in counts)
    reading = (
        " the patched bare query gives the answer but does not end it as the demonstrations' format would"
        if goes_on * 2 > failures
        else " most of these generations are not the answer followed by more text"
    )
    return (
        f" Where the task vector's first token is right but its generation fails the strict metric ({failures} "
        f"test prompts of the first sampling), the generation is a valid answer followed by more text in "
        f"{goes_on} ({goes_on / failures:.0%}):{reading}."
    )


def model_summary(study: StudyResults, model: str) -> str:
    """The summary of one model, every number and named task computed from the results."""
    kept = study.icl_works_results(model)
    everything = study.for_model(model)
    means = study.means(model)
    if not kept:
        return (
            f"<li><b>{_e(model)}</b>: ICL beats the baseline by at least {ICL_WORKS} on none of its "
            f"{len(everything)} tasks, so the task vector's share of ICL accuracy is not measured here. Over all "
            f"tasks: task vector {means['tv']:.2f}, ICL {means['icl']:.2f}, baseline {means['baseline']:.2f}. "
            f"{direction_sentence(everything)}</li>"
        )
    ci = mean_intervals(kept)
    k = mean_scores(kept)
    strict = ""
    if "tv_over_icl_strict" in ci:
        strict = (
            f" By the strict metric (the whole generated answer must be right) the task vector keeps "
            f"<b>{_ratio(k['tv_strict'], k['icl_strict'])}</b> ({_share_ci(ci['tv_over_icl_strict'])}): task "
            f"vector {k['tv_strict']:.2f}, ICL {k['icl_strict']:.2f}, baseline {k['baseline_strict']:.2f}."
            + strict_failure_sentence(kept)
        )
    return (
        f"<li><b>{_e(model)}</b>: on the {len(kept)} tasks where ICL beats the baseline by at least {ICL_WORKS}, "
        f"the task vector keeps <b>{_ratio(k['tv'], k['icl'])}</b> of ICL accuracy by the paper's first-token "
        f"rule (95% interval {_share_ci(ci['tv_over_icl'])}, resampling tasks and prompts, for the layers chosen "
        f"on dev): task vector {k['tv']:.2f} {_ci(ci['tv'])}, ICL {k['icl']:.2f} {_ci(ci['icl'])}, baseline "
        f"{k['baseline']:.2f} {_ci(ci['baseline'])}.{strict} {direction_sentence(kept)} Over all "
        f"{len(everything)} tasks: task vector {means['tv']:.2f}, ICL {means['icl']:.2f}.</li>"
    )


def _summary_section(study: StudyResults) -> str:
    items = "".join(model_summary(study, model) for model in study.models)
    return f"""
<h2 id="summary">Summary</h2>
<p>Hendel, Geva and Globerson (EMNLP Findings 2023) argue that in-context learning compresses the
demonstrations into a single vector theta, the residual stream at the last prompt token at a middle
layer, and that running the model on the bare query with theta patched in recovers most of ICL's
accuracy (about 80-90% over their 7 models and 18 tasks). Measured here:</p>
<ul>{items}</ul>
<p class="note">Baseline: the bare query. ICL: demonstrations and query. Task vector (TV): the bare query with theta
(from the demonstrations and a dummy query) replacing the last token's residual stream at one layer. Paper metric: the
first predicted token, stripped, must equal a valid answer (algorithmic, linguistic, translation; pairs kept only where
an answer is one token) or be a prefix of one or have one as its prefix (knowledge), as the paper's code scores.
Strict metric: greedy generation up to the newline must equal a valid answer. Intervals of the means and of the share:
two-level bootstrap ({BOOTSTRAP_RESAMPLES:,} resamples of the tasks, then of each task's prompts), holding each task's
chosen layer fixed (how much the layer choice moves results shows in the spread over split seeds in the tables).</p>
"""


def _main_table(study: StudyResults, model: str) -> str:
    rows = study.for_model(model)

    def cell(r: TaskResult, metric: str) -> tuple[str, str]:
        value = getattr(r.scores, metric)
        return (f"{value:.2f} <span class='note'>{_ci(r.scores.ci[metric])}</span>" if value == value else "", "")

    body = "".join(
        _row(
            [
                (_e(r.task), "l"),
                (_e(r.category), "l"),
                *[cell(r, m) for m in METHODS],
                *[cell(r, f"{m}_strict") for m in ("icl", "tv")],
                (f"{r.scores.spread['tv']:.2f}", ""),
                (_p(r), ""),
                (" ".join(map(str, r.scores.best_layers)), ""),
                (str(r.n_pairs) + (" &#9251;" if r.leading_space else ""), ""),
                (str(r.scores.n_test), ""),
            ]
        )
        for r in rows
    )
    for category, cat_means in study.category_means(model).items():
        body += _row(
            [
                (f"mean: {_e(category)}", "l"),
                ("", ""),
                *[(_fmt(cat_means[m]), "") for m in METHODS],
                *[(_fmt(cat_means[f"{m}_strict"]), "") for m in ("icl", "tv")],
                *[("", "")] * 5,
            ],
            "mean",
        )
    means = study.means(model)
    body += _row(
        [
            ("mean: all tasks", "l"),
            ("", ""),
            *[(_fmt(means[m]), "") for m in METHODS],
            *[(_fmt(means[f"{m}_strict"]), "") for m in ("icl", "tv")],
            *[("", "")] * 5,
        ],
        "mean",
    )
    n_seeds = len(rows[0].samples)
    return f"""
<h3>{_e(model)}</h3>
<table><thead><tr><th class="l">task</th><th class="l">category</th><th>baseline [95% CI]</th><th>ICL [95% CI]</th>
<th>task vector [95% CI]</th><th>ICL strict</th><th>TV strict</th><th>TV sd over seeds</th>
<th>TV vs ICL p (raw / Holm)</th>
<th>layer per seed</th><th>pairs</th><th>test prompts</th></tr></thead><tbody>{body}</tbody></table>
<p class="note">Accuracies are means over {n_seeds} samplings of the splits (split seeds in Method); test prompts are
counted over all of them. Intervals: 95% Wilson score intervals over the pooled test prompts (baseline: over its
distinct bare queries, since its queries are drawn with replacement as in the paper and a query's prediction does not
change). "TV vs ICL p": McNemar's exact test on the same test prompts, raw and Holm-adjusted over every model and task;
n.s. marks a difference within the noise (adjusted p &ge; {ALPHA}). &#9251;: the pairs are written with a leading
space (the paper's rule, see Provenance).</p>
"""


def error_sentence(result: TaskResult) -> str:
    """What ICL predicts where it is wrong, for a task where the task vector beats it."""
    errors = result.diagnosis["icl_errors"] if result.diagnosis else None
    s = result.scores
    text = (
        f"{result.model}, {result.task}: task vector {s.tv:.2f} against ICL {s.icl:.2f} (Holm-adjusted p = "
        f"{result.p_holm:.2g})."
    )
    if not errors or not errors["n_wrong"]:
        return text
    frequent = ", ".join(f"{prediction!r} ({count})" for prediction, count in errors["most_frequent"])
    return (
        f"{text} On the first sampling ICL's first token is wrong on {errors['n_wrong']} of {errors['n_test']} "
        f"test prompts; the most frequent wrong tokens are {frequent}; {errors['demonstration_answer']} of the "
        f"wrong tokens repeat an answer shown in the demonstrations, {errors['demonstration_input']} a "
        f"demonstration's input, {errors['query']} the query."
    )


def _above_section(study: StudyResults) -> str:
    above = [r for r in study.results if r.direction == "above"]
    if not above:
        return ""
    items = "".join(f"<li>{_e(error_sentence(r))}</li>" for r in above)
    return f"""
<h3 id="above">Where the task vector beats ICL</h3>
<p>The paper finds the task vector below or near ICL. Here it is significantly above ICL on {len(above)} (model, task)
pair(s). The patched bare query carries the task without the demonstrations' own tokens; the counts show what ICL
predicts where it fails, and how often that is a token the demonstrations show.</p>
<ul>{items}</ul>
"""


def _layers_section(study: StudyResults, figures: dict) -> str:
    parts = []
    for model in study.models:
        parts.append(f"""<figure>{_img(figures["accuracy_by_layer"][model], f"{model}: accuracy by layer")}
<figcaption class="note">{_e(model)} ({study.n_layers(model)} decoder blocks): task-vector accuracy on the dev prompts
when theta is patched in after each block; thin lines are tasks, thick lines category means, dots each task's
chosen layer. Reported test accuracies use the layer chosen on dev.</figcaption></figure>""")
    return "<h2 id='layers'>Accuracy by layer</h2>" + "".join(parts)


def _conflict_section(study: StudyResults, figures: dict) -> str:
    rows = [row for model in study.models for row in conflict_rows(study, model)]
    if not rows:
        return (
            "<h2 id='conflicting'>Conflicting tasks</h2><p>No pair of the paper's conflicting tasks has both "
            "tasks in this study.</p>"
        )

    def both(row: dict, key: str) -> tuple[str, str]:
        return (f"{_fmt(row[key])} <span class='note'>/ {_fmt(row[key + '_strict'])}</span>", "")

    body = "".join(
        _row(
            [
                (_e(r["model"]), "l"),
                (_e(r["task_a"]), "l"),
                (_e(r["task_b"]), "l"),
                both(r, "icl_on_a"),
                both(r, "icl_on_b"),
                both(r, "patched_on_a"),
                both(r, "patched_on_b"),
                ("yes" if r["overrides"] else "no", ""),
                (str(r["prompts"]), ""),
            ]
        )
        for r in rows
    )
    overridden = [r for r in rows if r["overrides"]]
    images = "".join(
        f"<figure>{_img(figures['conflicting_tasks'][m], f'{m}: conflicting tasks')}</figure>"
        for m in study.models
        if m in figures["conflicting_tasks"]
    )
    return f"""
<h2 id="conflicting">Conflicting tasks</h2>
<p>The demonstrations show task A; theta of task B is patched in at B's chosen layer. If theta carries the task,
the prediction follows B. Here the patched vector overrides the demonstrations in {len(overridden)} of {len(rows)}
(model, pair) cases (overrides: the patched prediction matches B's answer on at least half of the prompts and more
often than A's). In the paper it mostly does, translation being the exception.</p>
<table><thead><tr><th class="l">model</th><th class="l">task A (demonstrations)</th><th class="l">task B (theta)</th>
<th>ICL: A</th><th>ICL: B</th><th>ICL + theta(B): A</th><th>ICL + theta(B): B</th><th>overrides</th>
<th>prompts</th></tr></thead><tbody>{body}</tbody></table>
<p class="note">Accuracy against A's answers over A's test prompts (first split seed); against B's answers over the
prompts whose query B defines; each cell: paper metric / strict metric.</p>{images}
"""


def _robustness_section(study: StudyResults, figures: dict) -> str:
    rows = robustness_rows(study)
    if not rows:
        return ""
    body = "".join(
        _row(
            [
                (_e(r["model"]), "l"),
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
        f"<figure>{_img(figures['tsne'][m], f'{m}: t-SNE of task vectors')}</figure>"
        f"<figure>{_img(figures['distances'][m], f'{m}: distance histograms')}</figure>"
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
        parts.append(
            f"{label}, the top {j['top']} tokens of theta name the task's outputs for "
            f"{j['n_naming_outputs']} of {j['n_tasks']} tasks ({_names(j['naming_outputs'])}); on average "
            f"{j['mean_own_share']:.0%} of them are the task's own answer tokens against "
            f"{j['mean_other_share']:.0%} for the other tasks' theta, {reading}"
        )
    return f"{model}: " + "; ".join(parts) + "." if parts else ""


def _vocabulary_section(study: StudyResults) -> str:
    rows = vocabulary_rows(study)
    if not rows:
        return ""
    body = "".join(
        _row(
            [
                (_e(r["model"]), "l"),
                (_e(r["task"]), "l"),
                (_e(r["layer_kind"]), "l"),
                (str(r["layer"]), ""),
                (f"<code>{_e(r['top_tokens'])}</code>", "l"),
                (_fmt(r["own_answer_share"]), ""),
                (_fmt(r["other_tasks_share"]), ""),
                ("yes" if r["names_outputs"] else "no", ""),
            ]
        )
        for r in rows
    )
    judgements = {m: study.analysis(m).vocabulary_summary or {} for m in study.models}
    sentences = " ".join(_e(vocabulary_sentence(m, j)) for m, j in judgements.items())
    top = next((kind["top"] for j in judgements.values() for kind in j.values()), "")
    return f"""
<h2 id="vocabulary">Vocabulary projection</h2>
<p>Each task's mean theta (dev and test prompts, first split seed), read through the final norm and the unembedding
as if it were the last layer's output, at the task's chosen layer and at the last layer. The paper observes that the
top tokens name the task's outputs. Criterion: the share of the top {top} tokens that are first tokens of the task's
own answers (as text, case and surrounding space ignored), against the mean of the same share for the other tasks'
theta (answer tokens come up by chance too: letters, common words); theta names its outputs where its own share is
positive and higher. At the last layer, theta is the last block's output for the dummy queries, so its top tokens
are the model's own ICL predictions for them: that they name the outputs there is expected; the paper's observation
concerns the middle layer where theta is patched.</p>
<p>{sentences}</p>
<table><thead><tr><th class="l">model</th><th class="l">task</th><th class="l">layer</th><th>index</th>
<th class="l">top 5 tokens (* answer token)</th><th>own share</th><th>others' share</th><th>names outputs</th></tr>
</thead><tbody>{body}</tbody></table>
"""


def _paper_section(study: StudyResults) -> str:
    head = "".join(f"<th colspan='3'>{_e(m)}</th>" for m in study.models)
    sub = "<th>base</th><th>ICL</th><th>TV</th>" * (len(study.models) + 1)
    body = ""
    for task in study.tasks:
        paper_task = study.paper_task(task)
        mean = paper_mean(paper_task) if paper_task else None
        cells = [(_e(task), "l")]
        cells += [(_fmt(mean[k]), "") for k in METHODS] if mean else [("n/a", "")] * 3
        for model in study.models:
            r = study.get(model, task)
            cells += [(_fmt(getattr(r.scores, k)), "") for k in METHODS] if r else [("", "")] * 3
        cells.append((_e(study.differs(task)), "src"))
        body += _row(cells)
    return f"""
<h2 id="paper">Comparison with the paper</h2>
<p class="note">Paper: mean over its {len(paper_models())} models ({_e(", ".join(paper_models()))}); source:
{_e(CITATION)}. Tasks marked n/a replace a paper task that has no installable data source (see Provenance).</p>
<table><thead><tr><th class="l" rowspan="2">task</th><th colspan="3">paper (mean)</th>{head}
<th class="l" rowspan="2">differs from the paper</th></tr>
<tr>{sub}</tr></thead><tbody>{body}</tbody></table>
<p>{_e(_comparison_text(study))}</p>
"""


def _comparison_text(study: StudyResults) -> str:
    """Where the paper's pattern (ICL works; the task vector keeps most of it) holds here, and where not."""
    sentences = []
    for model in study.models:
        rows = study.for_model(model)
        works = [r for r in rows if r.icl_works]
        holds = [r.task for r in works if r.scores.tv >= HOLDS * r.scores.icl]
        falls = [r.task for r in works if r.scores.tv < HOLDS * r.scores.icl]
        no_icl = [r.task for r in rows if not r.icl_works]
        text = (
            f"{model}: ICL beats the baseline by at least {ICL_WORKS} on {len(works)} of {len(rows)} tasks; on "
            f"{len(holds)} of them the task vector keeps at least {HOLDS:.0%} of ICL accuracy, as in the paper"
        )
        text += f" (it falls short on {', '.join(falls)})" if falls else ""
        text += "."
        if no_icl:
            text += (
                f" On {', '.join(no_icl)} ICL does not beat the baseline by {ICL_WORKS} at this model size, so "
                "the task vector's share of ICL accuracy says little there."
            )
        sentences.append(text)
    paper = [paper_mean(study.paper_task(t)) for t in study.tasks if study.paper_task(t)]
    if paper:
        icl = sum(p["icl"] for p in paper) / len(paper)
        tv = sum(p["tv"] for p in paper) / len(paper)
        sentences.append(
            f"In the paper, on these tasks, the task vector keeps {tv / icl:.0%} of ICL accuracy "
            f"on average over its models (task vector {tv:.2f}, ICL {icl:.2f})."
        )
    return " ".join(sentences)


def _provenance_section(study: StudyResults) -> str:
    body = ""
    for task in study.tasks:
        rows = [r for r in study.results if r.task == task]
        meta = rows[0].info.task
        pairs = ", ".join(f"{r.model}: {r.n_pairs}" for r in rows)
        rules = meta.rules
        spaced = [r.model for r in rows if r.leading_space]
        scoring = (
            "first token equals an answer"
            if rules.scoring == "exact"
            else "first token and an answer, one a prefix of the other"
        )
        if rules.one_token:
            scoring += "; pairs with a one-token answer only"
        scoring += f"; leading space ({rules.leading_space}): {', '.join(spaced) if spaced else 'none'}"
        note = meta.differs or ""
        body += _row(
            [
                (_e(task), "l"),
                (_e(meta.description), "l"),
                (_e(pairs), "l"),
                (scoring, "l"),
                (_e(rows[0].sources), "src"),
                (_e(note), "l"),
            ]
        )
    models = ""
    for model in study.models:
        provenance = study.for_model(model)[0].info.model
        details = ", ".join(
            f"{key}: {_e(provenance[key])}"
            for key in ("source", "package", "package_version", "license", "file_sha256", "model_type", "n_layers")
            if key in provenance
        )
        models += f"<li><b>{_e(model)}</b>: {details}; dtype {_e(study.for_model(model)[0].info.dtype)}</li>"
    return f"""
<h2 id="provenance">Provenance of data and models</h2>
<ul>{models}</ul>
<p class="note">Each dataset is built by the pipeline's first step from the pinned sources listed (package and
version); pairs are counted after filtering for each model's tokenizer. The letter tasks cover the alphabet, so
they have 25 or 26 pairs; their prompts are sampled from those.</p>
<table><thead><tr><th class="l">task</th><th class="l">what</th><th class="l">pairs per model</th>
<th class="l">scoring</th><th class="l">sources</th><th class="l">differs from the paper</th></tr></thead>
<tbody>{body}</tbody></table>
"""


def _timings_section(timings: list[dict]) -> str:
    if not timings:
        return (
            "<h2 id='time'>Time per step</h2><p class='note'>No timings were found (they are read from "
            "Snakemake's benchmark files under logs/benchmarks/ when the report is built).</p>"
        )
    body = "".join(
        _row(
            [
                (_e(t["step"]), "l"),
                (str(t["jobs"]), ""),
                (f"{t['seconds']:.0f}", ""),
                (f"{t['max_seconds']:.0f}", ""),
                (f"{t['peak_rss_mb']:.0f}", ""),
            ]
        )
        for t in timings
    )
    return f"""
<h2 id="time">Time per step</h2>
<table><thead><tr><th class="l">step</th><th>jobs</th><th>job-seconds</th><th>longest job (s)</th>
<th>peak memory (MB)</th></tr></thead><tbody>{body}</tbody></table>
<p class="note">From the Snakemake benchmark files of the run that built this report (logs/benchmarks/). Jobs run
side by side, so wall time is less than the sum.</p>
"""


def render_html(
    study: StudyResults,
    figures: dict[str, dict[str, dict[str, bytes]]],
    timings: list[dict] | None = None,
) -> str:
    first = study.results[0].info
    fmt = dataclasses.asdict(first.format)
    sizes = dataclasses.asdict(first.sizes)
    seeds = ", ".join(f"{r.task}: {' '.join(map(str, r.seeds))}" for r in study.for_model(study.models[0]))
    settings = (
        f"<li>Demonstration <code>{_e(fmt['demonstration'])}</code>, query "
        f"<code>{_e(fmt['query'])}</code>, separator <code>{_e(repr(fmt['separator']))}</code></li>"
        f"<li>k = {sizes['k']} demonstrations; per split seed {sizes['baseline']} baseline queries, {sizes['dev']} dev "
        f"and {sizes['test']} test prompts per task; theta averaged over {sizes['dummies']} dummy queries</li>"
        f"<li>{len(study.results[0].samples)} samplings of the splits per task; split seeds: {_e(seeds)}</li>"
        "<li>The layer is chosen on dev prompts only (ties: the earliest), separately for each split seed; all "
        "reported accuracies are on test prompts (baseline on its own bare queries).</li>"
        "<li>Statistics: per task, 95% Wilson score intervals (pooled test prompts; the baseline's distinct bare "
        f"queries); means over tasks and the task vector's share of ICL: two-level bootstrap ({BOOTSTRAP_RESAMPLES:,} "
        "resamples of the tasks, then of their prompts, seed 0), conditional on each task's chosen layer and never "
        "narrower than the Wilson interval of the pooled prompts; task vector against ICL: McNemar's exact test on "
        f"the pooled test prompts, Holm-adjusted over every model and task, significance at {ALPHA}; spread over "
        "seeds: sample standard deviation.</li>"
        "<li>Scoring: the paper's first-token rule of each task (see Provenance) and the strict metric (greedy "
        f"generation to the separator, at most {fmt.get('max_answer_tokens', 10)} tokens, exact match against every "
        "valid answer; a generation stops early once it cannot become an answer, which changes no score).</li>"
        f"<li>Task filter of the paper: ICL beats the baseline by at least {ICL_WORKS}; the task vector 'holds' where "
        f"it keeps at least {HOLDS:.0%} of ICL accuracy.</li>"
    )
    versions = ", ".join(f"{p} {_version(p)}" for p in PACKAGES)
    tables = "".join(_main_table(study, model) for model in study.models)
    summaries = "".join(
        f"<figure>{_img(figures['accuracy_summary'][m], f'{m}: accuracy per task')}</figure>" for m in study.models
    )
    nav = " ".join(
        f"<a href='#{anchor}'>{name}</a>"
        for anchor, name in (
            ("summary", "Summary"),
            ("results", "Results"),
            ("layers", "Layers"),
            ("conflicting", "Conflicting tasks"),
            ("robustness", "Robustness"),
            ("vocabulary", "Vocabulary"),
            ("extended", "Extended studies"),
            ("paper", "Paper"),
            ("method", "Method"),
            ("provenance", "Provenance"),
            ("software", "Software"),
            ("time", "Time"),
        )
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>taskvec: in-context learning creates task vectors</title><style>{CSS}</style></head>
<body>
<h1>In-context learning creates task vectors: a reproduction</h1>
<nav class="note">{nav}</nav>
{_summary_section(study)}
<h2 id="results">Results by model</h2>
{tables}
{_above_section(study)}
{summaries}
{_layers_section(study, figures)}
{_conflict_section(study, figures)}
{_robustness_section(study, figures)}
{_vocabulary_section(study)}
<h2 id="extended">Extended studies</h2>
<p>Task vectors against function vectors (Todd et al., ICLR 2024: attention heads, shuffled-label ICL, a random
vector, another task's theta, the mean theta, the distribution gap), and how far the task vector travels (the
number of demonstrations, theta averaged over several demonstration sets): in the extended studies' report,
<a href="extended/index.html">extended/index.html</a>, made by <code>make reproduce-all</code> from this study's
files. They are not part of the default study, whose time they would exceed.</p>
{_paper_section(study)}
<h2 id="method">Method and settings</h2>
<ul>{settings}</ul>
{_provenance_section(study)}
<h2 id="software">Software</h2><p class="note">{_e(versions)}</p>
{_timings_section(timings or [])}
</body></html>
"""
