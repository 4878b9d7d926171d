"""What the study ran, for the report's last sections: the provenance of data and models, the
software's versions and the time per step (from Snakemake's benchmark files)."""

from __future__ import annotations

import importlib.metadata

from taskvec.report.collect import StudyResults
from taskvec.report.page import escape, table_row

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


def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def software_section() -> str:
    versions = ", ".join(f"{p} {package_version(p)}" for p in PACKAGES)
    return f'<h2 id="software">Software</h2><p class="note">{escape(versions)}</p>'


def model_studied(study: StudyResults, model: str) -> str:
    """What was studied under a model's name: the checkpoint (variant: base or instruction-tuned), its
    weights' format (a GGUF file's quantization) and the dtype it ran in."""
    info = study.for_model(model)[0].info
    provenance, dtype = info.model, info.dtype
    what = str(provenance.get("description") or provenance.get("source") or model)
    if str(provenance.get("file", "")).endswith(".gguf"):
        return f"{what}; its quantized GGUF weights dequantized to {dtype}"
    return f"{what}, run in {dtype}"


def provenance_section(study: StudyResults) -> str:
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
        body += table_row(
            [
                (escape(task), "l"),
                (escape(meta.description), "l"),
                (escape(pairs), "l"),
                (scoring, "l"),
                (escape(rows[0].sources), "src"),
                (escape(note), "l"),
            ]
        )
    models = ""
    for model in study.models:
        provenance = study.for_model(model)[0].info.model
        details = ", ".join(
            f"{key}: {escape(provenance[key])}"
            for key in ("source", "package", "package_version", "license", "file_sha256", "model_type", "n_layers")
            if key in provenance
        )
        models += f"<li><b>{escape(model)}</b>: {escape(model_studied(study, model))}; {details}</li>"
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


def timings_section(timings: list[dict]) -> str:
    if not timings:
        return (
            "<h2 id='time'>Time per step</h2><p class='note'>No timings were found (they are read from "
            "Snakemake's benchmark files under logs/benchmarks/ when the report is built).</p>"
        )
    body = "".join(
        table_row(
            [
                (escape(t["step"]), "l"),
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
<p class="note">From the Snakemake benchmark files of the study's steps (logs/benchmarks/), as they were when this
report was built: each job's last run, so a step that a later change did not rerun keeps its earlier time. Jobs
run side by side, so wall time is less than the sum.</p>
"""
