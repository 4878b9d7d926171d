"""The self-contained HTML report (inline CSS, figures as data URIs: it opens from disk)."""

from __future__ import annotations

import base64
import html
import importlib.metadata

from taskvec.report.collect import ICL_WORKS, StudyResults
from taskvec.report.paper import CITATION, paper_mean, paper_models

PACKAGES = ("taskvec", "torch", "transformers", "pyarrow", "numpy", "snakemake", "dvc")
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
.note{color:#555;font-size:.9rem}td.src{font-size:.78rem;color:#555;text-align:left}
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


def _model_section(study: StudyResults, model: str, png: bytes) -> str:
    rows = study.for_model(model)
    means = study.means(model)
    n_kept, kept = study.icl_works_means(model)
    body = "".join(
        _row([(_e(r.task), "l"), (_e(r.category), "l"), (_fmt(r.scores.baseline), ""), (_fmt(r.scores.icl), ""),
              (_fmt(r.scores.tv), ""), (str(r.scores.best_layer), ""), (str(r.n_pairs), ""),
              (str(r.scores.n_test), "")])
        for r in rows
    )
    for category, cat_means in study.category_means(model).items():
        body += _row([(f"mean: {_e(category)}", "l"), ("", ""), (_fmt(cat_means["baseline"]), ""),
                      (_fmt(cat_means["icl"]), ""), (_fmt(cat_means["tv"]), ""), ("", ""), ("", ""), ("", "")], "mean")
    body += _row([("mean: all tasks", "l"), ("", ""), (_fmt(means["baseline"]), ""), (_fmt(means["icl"]), ""),
                  (_fmt(means["tv"]), ""), ("", ""), ("", ""), ("", "")], "mean")
    provenance = rows[0].metadata["model"]
    details = ", ".join(
        f"{key}: {_e(provenance[key])}"
        for key in ("source", "package", "package_version", "license", "file_sha256", "model_type", "dtype")
        if key in provenance
    )
    image = base64.b64encode(png).decode()
    ratio = means["tv"] / means["icl"] if means["icl"] else float("nan")
    kept_ratio = kept["tv"] / kept["icl"] if kept["icl"] else float("nan")
    return f"""
<h3>{_e(model)}</h3>
<p>{study.n_layers(model)} decoder blocks. Over all {len(rows)} tasks the task vector keeps <b>{ratio:.0%}</b>
of ICL accuracy (task vector {_fmt(means['tv'])}, ICL {_fmt(means['icl'])}, baseline {_fmt(means['baseline'])}).
Over the {n_kept} tasks where ICL beats the baseline by at least {ICL_WORKS} (the paper's filter) it keeps
<b>{kept_ratio:.0%}</b> (task vector {_fmt(kept['tv'])}, ICL {_fmt(kept['icl'])}).</p>
<table><thead><tr><th class="l">task</th><th class="l">category</th><th>baseline</th><th>ICL</th>
<th>task vector</th><th>layer</th><th>pairs</th><th>test prompts</th></tr></thead><tbody>{body}</tbody></table>
<figure><img alt="{_e(model)}: task-vector accuracy by layer" src="data:image/png;base64,{image}">
<figcaption class="note">Task-vector accuracy on the dev prompts when theta is patched in at each layer; the
dotted line marks the best layer of the mean curve. Each task's reported layer is chosen on its own dev
prompts; test accuracy is reported at that layer.</figcaption></figure>
<p class="note">Model: {details}</p>
"""


def _paper_section(study: StudyResults) -> str:
    head = "".join(f"<th colspan='3'>{_e(m)}</th>" for m in study.models)
    sub = "<th>base</th><th>ICL</th><th>TV</th>" * (len(study.models) + 1)
    body = ""
    for task in study.tasks:
        paper_task = study.paper_task(task)
        mean = paper_mean(paper_task) if paper_task else None
        cells = [(_e(task), "l")]
        cells += [(_fmt(mean[k]), "") for k in ("baseline", "icl", "tv")] if mean else [("n/a", "")] * 3
        for model in study.models:
            r = study.get(model, task)
            cells += [(_fmt(getattr(r.scores, k)), "") for k in ("baseline", "icl", "tv")] if r else [("", "")] * 3
        body += _row(cells)
    return f"""
<h2>Comparison with the paper</h2>
<p class="note">Paper: mean over its {len(paper_models())} models ({_e(', '.join(paper_models()))}); source:
{_e(CITATION)}. Tasks marked n/a replace a paper task that has no installable data source (see Tasks).</p>
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


def _tasks_section(study: StudyResults) -> str:
    body = ""
    for task in study.tasks:
        rows = [r for r in study.results if r.task == task]
        meta = rows[0].metadata["task"]
        pairs = ", ".join(f"{r.model}: {r.n_pairs}" for r in rows)
        scoring = "exact one-token answer" if meta["one_token_output"] else "first token is a prefix of an answer"
        note = meta.get("note") or ""
        body += _row([(_e(task), "l"), (_e(meta.get("description", "")), "l"), (_e(pairs), "l"), (scoring, "l"),
                      (_e(rows[0].sources), "src"), (_e(note), "l")])
    return f"""
<h2>Tasks and data provenance</h2>
<p class="note">Each dataset is built by the pipeline's first step from the pinned sources listed (package and
version); pairs are counted after filtering for each model's tokenizer. The letter tasks cover the alphabet, so
they have 25 or 26 pairs; their prompts are sampled from those.</p>
<table><thead><tr><th class="l">task</th><th class="l">what</th><th class="l">pairs per model</th>
<th class="l">scoring</th><th class="l">sources</th><th class="l">differs from the paper</th></tr></thead>
<tbody>{body}</tbody></table>
"""


def render_html(study: StudyResults, figures: dict[str, bytes]) -> str:
    first = study.results[0].metadata
    fmt = first["format"]
    sizes = first["sizes"]
    settings = (
        f"<li>Demonstration <code>{_e(fmt['demonstration'])}</code>, query "
        f"<code>{_e(fmt['query'])}</code>, separator <code>{_e(repr(fmt['separator']))}</code></li>"
        f"<li>k = {sizes['k']} demonstrations; {sizes['baseline']} baseline queries, {sizes['dev']} dev and "
        f"{sizes['test']} test prompts per task; theta averaged over {sizes['dummies']} dummy queries</li>"
    )
    seeds = ", ".join(f"{r.task}: {r.metadata['seed']}" for r in study.for_model(study.models[0]))
    versions = ", ".join(f"{p} {_version(p)}" for p in PACKAGES)
    sections = "".join(_model_section(study, model, figures[model]) for model in study.models)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>taskvec: in-context learning creates task vectors</title><style>{CSS}</style></head>
<body>
<h1>In-context learning creates task vectors: a reproduction</h1>
<p>Hendel, Geva and Globerson (EMNLP Findings 2023) argue that in-context learning compresses the
demonstrations into a single vector theta, the residual stream at the last prompt token at a middle
layer, and that running the model on the bare query with theta patched in recovers most of ICL's
accuracy. This report measures that claim on the models below.</p>
<p class="note">Baseline: the bare query. ICL: demonstrations and query. Task vector (TV): the bare query with
theta (from the demonstrations and a dummy query) replacing the last token's residual stream at one
layer. Accuracy: the first predicted token, stripped of whitespace, must equal a valid answer (tasks filtered to
one-token answers) or be a prefix of one (the others).</p>
<h2>Results by model</h2>
{sections}
{_paper_section(study)}
{_tasks_section(study)}
<h2>Method and settings</h2>
<ul>{settings}<li>Split seeds: {_e(seeds)}</li>
<li>The layer is chosen on dev prompts only; all reported accuracies are on test prompts (baseline on
its own bare queries).</li></ul>
<h2>Software</h2><p class="note">{_e(versions)}</p>
</body></html>
"""
