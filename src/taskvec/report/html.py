"""The self-contained HTML report (inline CSS, figures as data URIs: it opens from disk)."""

from __future__ import annotations

import base64
import html
import importlib.metadata

from taskvec.analysis.stats import ALPHA, BOOTSTRAP_RESAMPLES
from taskvec.report.collect import ICL_WORKS, METHODS, StudyResults, TaskResult, mean_intervals
from taskvec.report.paper import CITATION, paper_mean, paper_models
from taskvec.report.tables import conflict_rows, robustness_rows, vocabulary_rows

PACKAGES = ("taskvec", "torch", "transformers", "tokenizers", "gguf", "safetensors", "pyarrow", "numpy",
            "scikit-learn", "matplotlib", "snakemake", "dvc")
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


def _p(result: TaskResult) -> str:
    test = result.scores.tv_vs_icl
    if test.significant:
        return f"{test.p_value:.3f}"
    return f"<span class='ns'>{test.p_value:.2f} n.s.</span>"


def _summary_section(study: StudyResults) -> str:
    items = []
    for model in study.models:
        means = study.means(model)
        kept = study.icl_works_results(model)
        ci = mean_intervals(kept)
        if kept:
            k_means = {m: sum(getattr(r.scores, m) for r in kept) / len(kept) for m in METHODS}
            differs = [r.task for r in kept if r.scores.tv_vs_icl.significant and r.scores.tv < r.scores.icl]
            items.append(
                f"<li><b>{_e(model)}</b>: on the {len(kept)} tasks where ICL beats the baseline by at least "
                f"{ICL_WORKS}, the task vector keeps <b>{_ratio(k_means['tv'], k_means['icl'])}</b> of ICL accuracy "
                f"(95% interval {ci['tv_over_icl'][0]:.0%} to {ci['tv_over_icl'][1]:.0%}): task vector "
                f"{k_means['tv']:.2f} {_ci(ci['tv'])}, ICL {k_means['icl']:.2f} {_ci(ci['icl'])}, baseline "
                f"{k_means['baseline']:.2f} {_ci(ci['baseline'])}. Over all {len(study.for_model(model))} tasks: task "
                f"vector {means['tv']:.2f}, ICL {means['icl']:.2f}. The task vector is significantly below ICL "
                f"(McNemar, p &lt; {ALPHA}) on {len(differs)} of these tasks"
                + (f" ({_e(', '.join(differs))})" if differs else "") + "; elsewhere the difference is within "
                "the noise of this many prompts.</li>")
    return f"""
<h2 id="summary">Summary</h2>
<p>Hendel, Geva and Globerson (EMNLP Findings 2023) argue that in-context learning compresses the
demonstrations into a single vector theta, the residual stream at the last prompt token at a middle
layer, and that running the model on the bare query with theta patched in recovers most of ICL's
accuracy (about 80-90% over their 7 models and 18 tasks). Measured here:</p>
<ul>{''.join(items)}</ul>
<p class="note">Intervals are 95% percentile-bootstrap intervals ({BOOTSTRAP_RESAMPLES:,} resamples of the prompts
of every task and split seed). Baseline: the bare query. ICL: demonstrations and query. Task vector (TV): the bare
query with theta (from the demonstrations and a dummy query) replacing the last token's residual stream at one
layer. Accuracy: the first predicted token, stripped of whitespace, must equal a valid answer (tasks filtered to
one-token answers) or be a prefix of one (the others).</p>
"""


def _main_table(study: StudyResults, model: str) -> str:
    rows = study.for_model(model)
    body = "".join(
        _row([(_e(r.task), "l"), (_e(r.category), "l"),
              *[(f"{getattr(r.scores, m):.2f} <span class='note'>{_ci(r.scores.ci[m])}</span>", "") for m in METHODS],
              (f"{r.scores.spread['tv']:.2f}", ""), (_p(r), ""),
              (" ".join(map(str, r.scores.best_layers)), ""), (str(r.n_pairs), ""), (str(r.scores.n_test), "")])
        for r in rows
    )
    for category, cat_means in study.category_means(model).items():
        body += _row([(f"mean: {_e(category)}", "l"), ("", ""), *[(_fmt(cat_means[m]), "") for m in METHODS],
                      *[("", "")] * 5], "mean")
    means = study.means(model)
    body += _row([("mean: all tasks", "l"), ("", ""), *[(_fmt(means[m]), "") for m in METHODS], *[("", "")] * 5],
                 "mean")
    n_seeds = len(rows[0].samples)
    return f"""
<h3>{_e(model)}</h3>
<table><thead><tr><th class="l">task</th><th class="l">category</th><th>baseline [95% CI]</th><th>ICL [95% CI]</th>
<th>task vector [95% CI]</th><th>TV sd over seeds</th><th>TV vs ICL p</th><th>layer per seed</th><th>pairs</th>
<th>test prompts</th></tr></thead><tbody>{body}</tbody></table>
<p class="note">Accuracies are means over {n_seeds} samplings of the splits (split seeds in Method); test prompts are
counted over all of them. "TV vs ICL p": McNemar's exact test on the same test prompts; n.s. marks a difference
within the noise (p &ge; {ALPHA}).</p>
"""


def _layers_section(study: StudyResults, figures: dict) -> str:
    parts = []
    for model in study.models:
        parts.append(f"""<figure>{_img(figures['accuracy_by_layer'][model], f'{model}: accuracy by layer')}
<figcaption class="note">{_e(model)} ({study.n_layers(model)} decoder blocks): task-vector accuracy on the dev prompts
when theta is patched in after each block; thin lines are tasks, thick lines category means, dots each task's
chosen layer. Reported test accuracies use the layer chosen on dev.</figcaption></figure>""")
    return "<h2 id='layers'>Accuracy by layer</h2>" + "".join(parts)


def _conflict_section(study: StudyResults, figures: dict) -> str:
    rows = [row for model in study.models for row in conflict_rows(study, model)]
    if not rows:
        return ("<h2 id='conflicting'>Conflicting tasks</h2><p>No pair of the paper's conflicting tasks has both "
                "tasks in this study.</p>")
    body = "".join(_row([(_e(r["model"]), "l"), (_e(r["task_a"]), "l"), (_e(r["task_b"]), "l"),
                         (_fmt(r["icl_on_a"]), ""), (_fmt(r["icl_on_b"]), ""), (_fmt(r["patched_on_a"]), ""),
                         (_fmt(r["patched_on_b"]), ""), ("yes" if r["overrides"] else "no", ""),
                         (str(r["prompts"]), "")]) for r in rows)
    overridden = [r for r in rows if r["overrides"]]
    images = "".join(f"<figure>{_img(figures['conflicting_tasks'][m], f'{m}: conflicting tasks')}</figure>"
                     for m in study.models if m in figures["conflicting_tasks"])
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
prompts whose query B defines.</p>{images}
"""


def _robustness_section(study: StudyResults, figures: dict) -> str:
    rows = robustness_rows(study)
    if not rows:
        return ""
    body = "".join(_row([(_e(r["model"]), "l"), (str(r["layer"]), ""), (str(r["task_vectors"]), ""),
                         (f"{r['nearest_centroid_accuracy']:.2f}", ""), (f"{r['chance']:.2f}", ""),
                         (f"{r['mean_within_task_distance']:.3f}", ""), (f"{r['mean_across_task_distance']:.3f}", "")])
                    for r in rows)
    images = "".join(
        f"<figure>{_img(figures['tsne'][m], f'{m}: t-SNE of task vectors')}</figure>"
        f"<figure>{_img(figures['distances'][m], f'{m}: distance histograms')}</figure>"
        for m in study.models if m in figures["tsne"])
    return f"""
<h2 id="robustness">Robustness of theta</h2>
<p>Task vectors from different demonstrations of one task should lie close together and apart from other tasks'.
All dev and test task vectors (first split seed) are compared at one layer per model, the best layer of the mean
dev curve. How well theta identifies its task: leave-one-out nearest-centroid accuracy (cosine).</p>
<table><thead><tr><th class="l">model</th><th>layer</th><th>task vectors</th><th>nearest-centroid accuracy</th>
<th>chance</th><th>mean distance, same task</th><th>mean distance, other tasks</th></tr></thead>
<tbody>{body}</tbody></table>{images}
"""


def _vocabulary_section(study: StudyResults) -> str:
    rows = vocabulary_rows(study)
    if not rows:
        return ""
    body = "".join(_row([(_e(r["model"]), "l"), (_e(r["task"]), "l"), (str(r["layer"]), ""),
                         (f"<code>{_e(r['top_tokens'])}</code>", "l")]) for r in rows)
    return f"""
<h2 id="vocabulary">Vocabulary projection</h2>
<p>Each task's mean theta (dev and test prompts, first split seed) at its chosen layer, read through the
final norm and the unembedding as if it were the last layer's output: the top 5 tokens.</p>
<table><thead><tr><th class="l">model</th><th class="l">task</th><th>layer</th>
<th class="l">top tokens</th></tr></thead><tbody>{body}</tbody></table>
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
        body += _row(cells)
    return f"""
<h2 id="paper">Comparison with the paper</h2>
<p class="note">Paper: mean over its {len(paper_models())} models ({_e(', '.join(paper_models()))}); source:
{_e(CITATION)}. Tasks marked n/a replace a paper task that has no installable data source (see Provenance).</p>
<table><thead><tr><th class="l" rowspan="2">task</th><th colspan="3">paper (mean)</th>{head}</tr>
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
        text = (f"{model}: ICL beats the baseline by at least {ICL_WORKS} on {len(works)} of {len(rows)} tasks; on "
                f"{len(holds)} of them the task vector keeps at least {HOLDS:.0%} of ICL accuracy, as in the paper")
        text += f" (it falls short on {', '.join(falls)})" if falls else ""
        text += "."
        if no_icl:
            text += (f" On {', '.join(no_icl)} ICL does not beat the baseline by {ICL_WORKS} at this model size, so "
                     "the task vector's share of ICL accuracy says little there.")
        sentences.append(text)
    paper = [paper_mean(study.paper_task(t)) for t in study.tasks if study.paper_task(t)]
    if paper:
        icl = sum(p["icl"] for p in paper) / len(paper)
        tv = sum(p["tv"] for p in paper) / len(paper)
        sentences.append(f"In the paper, on these tasks, the task vector keeps {tv / icl:.0%} of ICL accuracy "
                         f"on average over its models (task vector {tv:.2f}, ICL {icl:.2f}).")
    return " ".join(sentences)


def _provenance_section(study: StudyResults) -> str:
    body = ""
    for task in study.tasks:
        rows = [r for r in study.results if r.task == task]
        meta = rows[0].metadata["task"]
        pairs = ", ".join(f"{r.model}: {r.n_pairs}" for r in rows)
        scoring = "exact one-token answer" if meta["one_token_output"] else "first token is a prefix of an answer"
        note = meta.get("note") or ""
        body += _row([(_e(task), "l"), (_e(meta.get("description", "")), "l"), (_e(pairs), "l"), (scoring, "l"),
                      (_e(rows[0].sources), "src"), (_e(note), "l")])
    models = ""
    for model in study.models:
        provenance = study.for_model(model)[0].metadata["model"]
        details = ", ".join(f"{key}: {_e(provenance[key])}" for key in (
            "source", "package", "package_version", "license", "file_sha256", "model_type", "n_layers")
            if key in provenance)
        models += f"<li><b>{_e(model)}</b>: {details}; dtype {_e(study.for_model(model)[0].metadata['dtype'])}</li>"
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
        return ("<h2 id='time'>Time per step</h2><p class='note'>No timings were found (they are read from "
                "Snakemake's benchmark files under logs/benchmarks/ when the report is built).</p>")
    body = "".join(_row([(_e(t["step"]), "l"), (str(t["jobs"]), ""), (f"{t['seconds']:.0f}", ""),
                         (f"{t['max_seconds']:.0f}", ""), (f"{t['peak_rss_mb']:.0f}", "")]) for t in timings)
    return f"""
<h2 id="time">Time per step</h2>
<table><thead><tr><th class="l">step</th><th>jobs</th><th>job-seconds</th><th>longest job (s)</th>
<th>peak memory (MB)</th></tr></thead><tbody>{body}</tbody></table>
<p class="note">From the Snakemake benchmark files of the run that built this report (logs/benchmarks/). Jobs run
side by side, so wall time is less than the sum.</p>
"""


def render_html(study: StudyResults, figures: dict[str, dict[str, dict[str, bytes]]],
                timings: list[dict] | None = None) -> str:
    first = study.results[0].metadata
    fmt = first["format"]
    sizes = first["sizes"]
    seeds = ", ".join(f"{r.task}: {' '.join(map(str, r.seeds))}" for r in study.for_model(study.models[0]))
    settings = (
        f"<li>Demonstration <code>{_e(fmt['demonstration'])}</code>, query "
        f"<code>{_e(fmt['query'])}</code>, separator <code>{_e(repr(fmt['separator']))}</code></li>"
        f"<li>k = {sizes['k']} demonstrations; per split seed {sizes['baseline']} baseline queries, {sizes['dev']} dev "
        f"and {sizes['test']} test prompts per task; theta averaged over {sizes['dummies']} dummy queries</li>"
        f"<li>{len(study.results[0].samples)} samplings of the splits per task; split seeds: {_e(seeds)}</li>"
        "<li>The layer is chosen on dev prompts only (ties: the earliest), separately for each split seed; all "
        "reported accuracies are on test prompts (baseline on its own bare queries).</li>"
        f"<li>Statistics: 95% percentile bootstrap over prompts ({BOOTSTRAP_RESAMPLES:,} resamples, seed 0); "
        f"task vector against ICL: McNemar's exact test on the pooled test prompts, significance at {ALPHA}; spread "
        "over seeds: sample standard deviation.</li>"
        f"<li>Task filter of the paper: ICL beats the baseline by at least {ICL_WORKS}; the task vector 'holds' where "
        f"it keeps at least {HOLDS:.0%} of ICL accuracy.</li>"
    )
    versions = ", ".join(f"{p} {_version(p)}" for p in PACKAGES)
    tables = "".join(_main_table(study, model) for model in study.models)
    summaries = "".join(f"<figure>{_img(figures['accuracy_summary'][m], f'{m}: accuracy per task')}</figure>"
                        for m in study.models)
    nav = " ".join(f"<a href='#{anchor}'>{name}</a>" for anchor, name in (
        ("summary", "Summary"), ("results", "Results"), ("layers", "Layers"), ("conflicting", "Conflicting tasks"),
        ("robustness", "Robustness"), ("vocabulary", "Vocabulary"), ("paper", "Paper"), ("method", "Method"),
        ("provenance", "Provenance"), ("software", "Software"), ("time", "Time")))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>taskvec: in-context learning creates task vectors</title><style>{CSS}</style></head>
<body>
<h1>In-context learning creates task vectors: a reproduction</h1>
<nav class="note">{nav}</nav>
{_summary_section(study)}
<h2 id="results">Results by model</h2>
{tables}
{summaries}
{_layers_section(study, figures)}
{_conflict_section(study, figures)}
{_robustness_section(study, figures)}
{_vocabulary_section(study)}
{_paper_section(study)}
<h2 id="method">Method and settings</h2>
<ul>{settings}</ul>
{_provenance_section(study)}
<h2 id="software">Software</h2><p class="note">{_e(versions)}</p>
{_timings_section(timings or [])}
</body></html>
"""
