"""The self-contained HTML report (inline CSS, figures as data URIs: it opens from disk)."""

from __future__ import annotations

import base64
import html
import importlib.metadata

from taskvec.report.collect import StudyResults

PACKAGES = ("taskvec", "torch", "transformers", "pyarrow", "numpy", "snakemake", "dvc")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:60rem;margin:2rem auto;
padding:0 1rem;color:#1a1a1a;line-height:1.5}
h1{font-size:1.7rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1rem 0;font-size:.92rem}
th,td{padding:.25rem .7rem;border-bottom:1px solid #e4e4e4;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
tr.mean td{font-weight:600;border-top:2px solid #999}
img{max-width:100%}code{background:#f3f3f3;padding:0 .2rem}
.note{color:#555;font-size:.92rem}
"""


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _model_section(study: StudyResults, model: str, png: bytes) -> str:
    rows = study.for_model(model)
    means = study.means(model)
    n_layers = study.n_layers(model)
    body = "".join(
        f"<tr><td>{html.escape(r.task)}</td><td>{html.escape(r.category)}</td><td>{_fmt(r.scores.baseline)}</td>"
        f"<td>{_fmt(r.scores.icl)}</td><td>{_fmt(r.scores.tv)}</td><td>{r.scores.best_layer}</td>"
        f"<td>{r.metadata['n_pairs_usable']}</td><td>{r.scores.n_test}</td></tr>"
        for r in rows
    )
    body += (
        f"<tr class='mean'><td>mean</td><td></td><td>{_fmt(means['baseline'])}</td><td>{_fmt(means['icl'])}</td>"
        f"<td>{_fmt(means['tv'])}</td><td></td><td></td><td></td></tr>"
    )
    provenance = rows[0].metadata["model"]
    details = ", ".join(
        f"{key}: {html.escape(str(provenance[key]))}"
        for key in ("source", "package", "package_version", "license", "file_sha256", "model_type", "dtype")
        if key in provenance
    )
    image = base64.b64encode(png).decode()
    ratio = means["tv"] / means["icl"] if means["icl"] else float("nan")
    return f"""
<h2>{html.escape(model)}</h2>
<p>{n_layers} decoder blocks. The task vector keeps <b>{ratio:.0%}</b> of ICL accuracy on average
(task vector {_fmt(means['tv'])}, ICL {_fmt(means['icl'])}, baseline {_fmt(means['baseline'])}).</p>
<table><thead><tr><th>task</th><th>category</th><th>baseline</th><th>ICL</th><th>task vector</th>
<th>layer</th><th>pairs</th><th>test prompts</th></tr></thead><tbody>{body}</tbody></table>
<figure><img alt="{html.escape(model)}: task-vector accuracy by layer" src="data:image/png;base64,{image}">
<figcaption class="note">Task-vector accuracy on the dev prompts when theta is patched in at each layer; the
dotted line marks the best layer of the mean curve. Each task's reported layer is chosen on its own dev
prompts; test accuracy is reported at that layer.</figcaption></figure>
<p class="note">Model: {details}</p>
"""


def render_html(study: StudyResults, figures: dict[str, bytes]) -> str:
    first = study.results[0].metadata
    fmt = first["format"]
    sizes = first["sizes"]
    settings = (
        f"<li>Demonstration <code>{html.escape(fmt['demonstration'])}</code>, query "
        f"<code>{html.escape(fmt['query'])}</code>, separator <code>{html.escape(repr(fmt['separator']))}</code></li>"
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
<p class="note">Baseline: the bare query. ICL: demonstrations and query. Task vector: the bare query with
theta (from the demonstrations and a dummy query) replacing the last token's residual stream at one
layer. Accuracy: the first predicted token, stripped of whitespace, is a prefix of a valid answer.</p>
{sections}
<h2>Method and settings</h2>
<ul>{settings}<li>Split seeds: {html.escape(seeds)}</li>
<li>The layer is chosen on dev prompts only; all reported accuracies are on test prompts (baseline on
its own bare queries).</li></ul>
<h2>Software</h2><p class="note">{html.escape(versions)}</p>
</body></html>
"""
