"""The self-contained HTML report (inline CSS, figures as data URIs: it opens from disk)."""

from __future__ import annotations

import dataclasses
import math

from taskvec.analysis.stats import ALPHA, BOOTSTRAP_RESAMPLES
from taskvec.report.analyses import conflict_section, robustness_section, vocabulary_section
from taskvec.report.collect import HOLDS, ICL_WORKS, METHODS, StudyResults, TaskResult, mean_intervals, mean_scores
from taskvec.report.comparison import paper_section, paper_size_range
from taskvec.report.method import model_studied, provenance_section, software_section, timings_section
from taskvec.report.page import escape, image, interval_text, names_text, number_text, page, table_row


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


def direction_sentence(results: list[TaskResult]) -> str:
    """Which tasks have the task vector significantly above ICL, which below, and which within the
    noise (Holm-adjusted McNemar), each named."""
    groups = {d: [r.task for r in results if r.direction == d] for d in ("above", "below", "within noise")}
    parts = [
        f"significantly above ICL on {len(groups['above'])} ({names_text(groups['above'])})",
        f"significantly below on {len(groups['below'])} ({names_text(groups['below'])})",
        f"not significantly different on {len(groups['within noise'])} (no test of equivalence)",
    ]
    return (
        f"Of these {len(results)} tasks, the task vector is {parts[0]}, {parts[1]}, and {parts[2]} "
        f"(McNemar's exact test, p &lt; {ALPHA} after Holm's adjustment over every model and task of the "
        "study)."
    )


def strict_failure_sentence(results: list[TaskResult]) -> str:
    """How the task vector fails the strict metric where its first token is right (first sampling). On
    exact-scored tasks the first token is the whole answer, so such a generation is the answer and more
    by construction; only the prefix-scored tasks can show otherwise, and only they are counted."""
    counts = [r.diagnosis["tv_strict"] for r in results if r.diagnosis]
    failures = sum(c["first_token_right_strict_wrong"] for c in counts)
    if not failures:
        return ""
    exact = sum(c["first_token_right_strict_wrong"] for c in counts if c["scoring"] == "exact")
    prefix = [c for c in counts if c["scoring"] != "exact"]
    tested = sum(c["first_token_right_strict_wrong"] for c in prefix)
    text = (
        f" Where the task vector's first token is right but its generation fails the strict metric ({failures} "
        f"test prompts of the first sampling), the generation goes on past the answer: by construction on the "
        f"exact-scored tasks, whose first token is the whole answer ({exact} prompts)"
    )
    if not tested:
        return text + "; no prefix-scored task has such a prompt, so nothing here tests it."
    goes_on = sum(c["answer_then_more"] for c in prefix)
    reading = (
        "the patched bare query gives the answer but does not end it as the demonstrations' format would"
        if goes_on * 2 > tested
        else "most of these generations are not the answer followed by more text"
    )
    return (
        f"{text}; on the prefix-scored tasks, where a right first token need not be the whole answer, in "
        f"{goes_on} of {tested} ({goes_on / tested:.0%}): {reading}."
    )


def model_summary(study: StudyResults, model: str) -> str:
    """The summary of one model, every number and named task computed from the results."""
    kept = study.icl_works_results(model)
    everything = study.for_model(model)
    means = study.means(model)
    if not kept:
        return (
            f"<li><b>{escape(model)}</b>: ICL beats the baseline by at least {ICL_WORKS} on none of its "
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
        f"<li><b>{escape(model)}</b>: on the {len(kept)} tasks where ICL beats the baseline by at least {ICL_WORKS}, "
        f"the task vector keeps <b>{_ratio(k['tv'], k['icl'])}</b> of ICL accuracy by the paper's first-token "
        f"rule (95% interval {_share_ci(ci['tv_over_icl'])}, resampling tasks and prompts, for the layers chosen "
        f"on dev): task vector {k['tv']:.2f} {interval_text(ci['tv'])}, "
        f"ICL {k['icl']:.2f} {interval_text(ci['icl'])}, baseline "
        f"{k['baseline']:.2f} {interval_text(ci['baseline'])}.{strict} {direction_sentence(kept)} Over all "
        f"{len(everything)} tasks: task vector {means['tv']:.2f}, ICL {means['icl']:.2f}.</li>"
    )


def _summary_section(study: StudyResults, figures: dict) -> str:
    items = "".join(model_summary(study, model) for model in study.models)
    studied = "; ".join(f"<b>{escape(m)}</b> is {escape(model_studied(study, m))}" for m in study.models)
    headline = "".join(
        f"<figure>{image(figures['accuracy_summary'][m], f'{m}: accuracy per task')}</figure>"
        for m in study.models
        if m in figures.get("accuracy_summary", {})
    )
    return f"""
<h2 id="summary">Summary</h2>
<p>Hendel, Geva and Globerson (EMNLP Findings 2023) argue that in-context learning compresses the
demonstrations into a single vector theta, the residual stream at the last prompt token at a middle
layer, and that running the model on the bare query with theta patched in recovers most of ICL's
accuracy. Their models are full-precision base models of {paper_size_range()} parameters. Studied here:
{studied}.</p>
{headline}
<ul>{items}</ul>
<p class="note">Figures: test accuracy per task with 95% Wilson intervals; hollow marks: the paper's mean over its
models, where the task is one of the paper's. Baseline: the bare query. ICL: demonstrations and query. Task vector
(TV): the bare query with theta (from the demonstrations and a dummy query) replacing the last token's residual stream
at one layer. Paper metric: the first predicted token, stripped, must equal a valid answer (algorithmic, linguistic,
translation; pairs kept only where an answer is one token) or be a prefix of one or have one as its prefix
(knowledge), as the paper's code scores. Strict metric: greedy generation up to the newline must equal a valid
answer. Intervals of the means and of the share: two-level bootstrap ({BOOTSTRAP_RESAMPLES:,} resamples of the tasks,
then of each task's prompts), holding each task's chosen layer fixed: they leave out how much the layer choice
moves results (the spread over split seeds in the tables mixes new splits with new layers, so it does not isolate
it either).</p>
"""


def _main_table(study: StudyResults, model: str) -> str:
    rows = study.for_model(model)

    def cell(r: TaskResult, metric: str) -> tuple[str, str]:
        value = getattr(r.scores, metric)
        return (
            f"{value:.2f} <span class='note'>{interval_text(r.scores.ci[metric])}</span>" if value == value else "",
            "",
        )

    body = "".join(
        table_row(
            [
                (escape(r.task), "l"),
                (escape(r.category), "l"),
                *[cell(r, m) for m in METHODS],
                *[cell(r, f"{m}_strict") for m in ("icl", "tv")],
                (f"{r.scores.spread['tv']:.2f}", ""),
                (_p(r), ""),
                (_layers_text(r), ""),
                (str(r.n_pairs) + (" &#9251;" if r.leading_space else ""), ""),
                (str(r.scores.n_test), ""),
            ]
        )
        for r in rows
    )
    for category, cat_means in study.category_means(model).items():
        body += table_row(
            [
                (f"mean: {escape(category)}", "l"),
                ("", ""),
                *[(number_text(cat_means[m]), "") for m in METHODS],
                *[(number_text(cat_means[f"{m}_strict"]), "") for m in ("icl", "tv")],
                *[("", "")] * 5,
            ],
            "mean",
        )
    means = study.means(model)
    body += table_row(
        [
            ("mean: all tasks", "l"),
            ("", ""),
            *[(number_text(means[m]), "") for m in METHODS],
            *[(number_text(means[f"{m}_strict"]), "") for m in ("icl", "tv")],
            *[("", "")] * 5,
        ],
        "mean",
    )
    n_seeds = len(rows[0].samples)
    return f"""
<h3>{escape(model)}</h3>
<table><thead><tr><th class="l">task</th><th class="l">category</th><th>baseline [95% CI]</th><th>ICL [95% CI]</th>
<th>task vector [95% CI]</th><th>ICL strict</th><th>TV strict</th><th>TV sd over seeds</th>
<th>TV vs ICL p (raw / Holm)</th>
<th>layer per seed</th><th>pairs</th><th>test prompts</th></tr></thead><tbody>{body}</tbody></table>
<p class="note">Accuracies are means over {n_seeds} samplings of the splits (split seeds in Method); test prompts are
counted over all of them. Intervals: 95% Wilson score intervals over the pooled test prompts (baseline: over its
distinct bare queries, since its queries are drawn with replacement as in the paper and a query's prediction does not
change). "TV vs ICL p": McNemar's exact test on the same test prompts, raw and Holm-adjusted over every model and task;
n.s. marks a difference within the noise (adjusted p &ge; {ALPHA}). Layer "none": no layer's dev accuracy beats the
bare query's in that sampling, so no layer works there (its task-vector accuracy is at the tie rule's first layer).
&#9251;: the pairs are written with a leading space (the paper's rule, see Provenance).</p>
"""


def against_chance(seen: int, expected: float, n: int) -> str:
    """How ``seen`` of ``n`` compares with the ``expected`` count of chance: "more than" or "fewer than"
    where a binomial test of that chance rejects it one-sided at ALPHA, else "about what"."""
    if n <= 0:
        return "about what"
    rate = min(max(expected / n, 0.0), 1.0)

    def tail(ks) -> float:
        return sum(math.comb(n, k) * rate**k * (1 - rate) ** (n - k) for k in ks)

    if tail(range(seen, n + 1)) < ALPHA:
        return "more than"
    if tail(range(0, seen + 1)) < ALPHA:
        return "fewer than"
    return "about what"


def _layers_text(result: TaskResult) -> str:
    """The layer chosen per sampling, or "none" where no layer's dev accuracy beats the bare query."""
    s = result.scores
    return " ".join(str(layer) if works else "none" for layer, works in zip(s.best_layers, s.layers_work))


def error_sentence(result: TaskResult) -> str:
    """What ICL predicts where it is wrong, for a task where the task vector beats it, against what
    wrong tokens drawn at random from the task's answers would repeat."""
    errors = result.diagnosis["icl_errors"] if result.diagnosis else None
    s = result.scores
    text = (
        f"{result.model}, {result.task}: task vector {s.tv:.2f} against ICL {s.icl:.2f} (Holm-adjusted p = "
        f"{result.p_holm:.2g})."
    )
    if not errors or not errors["n_wrong"]:
        return text
    frequent = ", ".join(f"{prediction!r} ({count})" for prediction, count in errors["most_frequent"])
    answer, given = errors["demonstration_answer"], errors["demonstration_input"]
    chance_answer, chance_input = errors["chance_demonstration_answer"], errors["chance_demonstration_input"]
    return (
        f"{text} On the first sampling ICL's first token is wrong on {errors['n_wrong']} of {errors['n_test']} "
        f"test prompts; the most frequent wrong tokens are {frequent}; {answer} of the wrong tokens repeat an "
        f"answer shown in the demonstrations and {given} a demonstration's input, against {chance_answer:g} and "
        f"{chance_input:g} expected of wrong tokens drawn at random from the task's {errors['n_answers']} answers "
        f"({against_chance(answer, chance_answer, errors['n_wrong'])} chance gives for answers, "
        f"{against_chance(given, chance_input, errors['n_wrong'])} it gives for inputs); {errors['query']} repeat "
        "the query."
    )


def _above_section(study: StudyResults) -> str:
    above = [r for r in study.results if r.direction == "above"]
    if not above:
        return ""
    items = "".join(f"<li>{escape(error_sentence(r))}</li>" for r in above)
    return f"""
<h3 id="above">Where the task vector beats ICL</h3>
<p>The paper finds the task vector below or near ICL. Here it is significantly above ICL on {len(above)} (model, task)
pair(s). The counts show what ICL predicts where it fails, and how often that is a token the demonstrations show,
beside how often a wrong token drawn at random from the task's answers would be one.</p>
<ul>{items}</ul>
"""


def _layers_section(study: StudyResults, figures: dict) -> str:
    parts = []
    for model in study.models:
        name = escape(model)
        parts.append(f"""<figure>{image(figures["accuracy_by_layer"][model], f"{model}: accuracy by layer")}
<figcaption class="note">{name} ({study.n_layers(model)} decoder blocks): task-vector accuracy on the dev prompts
when theta is patched in after each block; thin lines are tasks, thick lines category means, dots each task's
chosen layer. Reported test accuracies use the layer chosen on dev.</figcaption></figure>""")
    return "<h2 id='layers'>Accuracy by layer</h2>" + "".join(parts)


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
        f"<li>Demonstration <code>{escape(fmt['demonstration'])}</code>, query "
        f"<code>{escape(fmt['query'])}</code>, separator <code>{escape(repr(fmt['separator']))}</code></li>"
        f"<li>k = {sizes['k']} demonstrations; per split seed {sizes['baseline']} baseline queries, {sizes['dev']} dev "
        f"and {sizes['test']} test prompts per task; theta averaged over {sizes['dummies']} dummy queries</li>"
        f"<li>{len(study.results[0].samples)} samplings of the splits per task; split seeds: {escape(seeds)}</li>"
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
        f"<li>Task filter of the paper: ICL beats the baseline by at least {ICL_WORKS}. This study's criterion (not "
        f"the paper's): the task vector 'holds' where it keeps at least {HOLDS:.0%} of ICL accuracy.</li>"
    )
    tables = "".join(_main_table(study, model) for model in study.models)
    links = [
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
    ]
    body = f"""{_summary_section(study, figures)}
<h2 id="results">Results by model</h2>
{tables}
{_above_section(study)}
{_layers_section(study, figures)}
{conflict_section(study, figures)}
{robustness_section(study, figures)}
{vocabulary_section(study)}
<h2 id="extended">Extended studies</h2>
<p>Task vectors against function vectors (Todd et al., ICLR 2024: attention heads, shuffled-label ICL, a random
vector, another task's theta, the mean theta, the distribution gap); how far the task vector travels (the
number of demonstrations, theta averaged over several demonstration sets, prompt formats); and every method that
turns demonstrations into a vector compared under one protocol (one pool, choices on dev, gates, label
controls): in the extended studies' report,
<a href="extended/index.html">extended/index.html</a>, made by <code>make reproduce-all</code> from this study's
files. They are not part of the default study, whose time they would exceed.</p>
{paper_section(study)}
<h2 id="method">Method and settings</h2>
<ul>{settings}</ul>
{provenance_section(study)}
{software_section()}
{timings_section(timings or [])}"""
    return page(
        "taskvec: in-context learning creates task vectors",
        "In-context learning creates task vectors: a reproduction",
        links,
        body,
    )
