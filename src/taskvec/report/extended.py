"""The extended studies' report (``reports/extended/``, made by `make reproduce-all`): task vectors
against function vectors, and how far the task vector travels (demonstrations, demonstration sets,
prompt formats). It reads the study's results (for the
tasks where ICL works, the first sampling's ICL and baseline, the categories) and the extended
analyses, and writes index.html, metrics.json, tables and figures beside the main report, which it
does not change."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path

from taskvec import store
from taskvec.errors import ConfigError
from taskvec.function_vectors import report as vectors
from taskvec.function_vectors import section as vectors_section
from taskvec.method_comparison import figures as compared_figures
from taskvec.method_comparison import report as compared
from taskvec.report import formats, formats_section, formats_text, travel
from taskvec.report.collect import StudyResults, collect
from taskvec.report.page import page
from taskvec.report.tables import write_table


def _kept(study: StudyResults, model: str, analysis: str) -> list[str]:
    """The tasks where ICL works (the paper's filter), among those an extended analysis ran on."""
    ran = getattr(study.analysis(model), analysis).tasks
    return [r.task for r in study.icl_works_results(model) if r.task in ran]


def _first_sampling(study: StudyResults, model: str, metric: str) -> dict[str, float]:
    return {r.task: getattr(r.samples[0], metric) for r in study.for_model(model)}


def extended_metrics(study: StudyResults) -> dict:
    """Per model and task: the function-vector comparison's figures (``fv``, ``fv_ci``,
    ``shuffled_icl``, ``random_vector``, ``kl_tv``, ``kl_fv`` and the rest) and how far the task vector
    travels (``icl_by_k``, ``tv_by_k``, ``tv_by_contexts``, ``icl_by_format``, ``tv_by_format`` and the
    rest, with Wilson intervals); per model the means over the tasks where ICL works with two-level
    bootstrap intervals (``function_vectors``, ``travel``, ``formats`` with its transfer matrix)."""
    out: dict = {"models": {}}
    for model in study.models:
        analyses = study.analysis(model)
        entry: dict = {"tasks": {}}
        if analyses.vectors is not None:
            for task, values in vectors.task_metrics(analyses.vectors).items():
                entry["tasks"].setdefault(task, {}).update(values)
            entry["function_vectors"] = vectors.model_metrics(
                analyses.vectors, _kept(study, model, "vectors"), _first_sampling(study, model, "icl")
            )
        if analyses.travel is not None:
            for task, values in travel.task_metrics(analyses.travel).items():
                entry["tasks"].setdefault(task, {}).update(values)
            entry["travel"] = travel.model_metrics(analyses.travel, _kept(study, model, "travel"))
        if analyses.formats is not None:
            for task, values in formats.task_metrics(analyses.formats).items():
                entry["tasks"].setdefault(task, {}).update(values)
            entry["formats"] = formats.model_metrics(analyses.formats, _kept(study, model, "formats"))
        if analyses.methods is not None:
            for task, values in compared.task_metrics(analyses.methods).items():
                entry["tasks"].setdefault(task, {}).update(values)
            entry["methods"] = compared.model_metrics(analyses.methods, _kept(study, model, "methods"))
        if entry["tasks"]:
            out["models"][model] = entry
    return out


def _write_figures(figures: dict[str, dict[str, bytes]], out: Path, model: str) -> None:
    """Each figure (name -> {"png": ..., "svg": ...}) as figures/<name>_<model>.<format>."""
    for name, files in figures.items():
        for fmt, data in files.items():
            store.write_bytes(data, out / "figures" / f"{name}_{model}.{fmt}")


def _vectors_parts(study: StudyResults, out: Path, models: list[str]) -> tuple[list, list[dict]]:
    parts, rows = [], []
    for model in models:
        comparison = study.analysis(model).vectors
        kept = _kept(study, model, "vectors")
        icl, baseline = _first_sampling(study, model, "icl"), _first_sampling(study, model, "baseline")
        figures = {
            "heads_aie": vectors_section.aie_heatmap(comparison),
            "heads_n": vectors_section.heads_curve(comparison, kept),
        }
        _write_figures(figures, out, model)
        model_rows = vectors_section.table_rows(comparison, icl, baseline)
        rows += model_rows
        shown = {"aie": figures["heads_aie"], "heads": figures["heads_n"]}
        parts.append((comparison, model_rows, vectors.summary_sentences(comparison, kept, icl, baseline), shown))
    return parts, rows


def _travel_parts(study: StudyResults, out: Path, models: list[str]) -> tuple[list, list[dict]]:
    parts, rows = [], []
    for model in models:
        result = study.analysis(model).travel
        kept = _kept(study, model, "travel")
        categories = {r.task: r.category for r in study.for_model(model)}
        figures = {"k": travel.k_figure(result, kept, categories), "contexts": travel.contexts_figure(result, kept)}
        _write_figures({f"travel_{name}": files for name, files in figures.items()}, out, model)
        model_rows = travel.table_rows(result)
        rows += model_rows
        parts.append((result, model_rows, travel.summary_sentences(result, kept), figures))
    return parts, rows


def _formats_parts(study: StudyResults, out: Path, models: list[str]) -> tuple[list, list[dict], list[dict]]:
    parts, rows, transfer = [], [], []
    for model in models:
        result = study.analysis(model).formats
        kept = _kept(study, model, "formats")
        figure = formats_section.transfer_figure(result, kept)
        _write_figures({"formats_transfer": figure}, out, model)
        rows += formats_section.table_rows(result)
        transfer += formats_section.transfer_rows(result, kept)
        parts.append((result, kept, formats_text.summary_sentences(result, kept), figure))
    return parts, rows, transfer


PROTOCOL = (
    "One protocol for every method, on the first sampling of each task: the study's test prompts and scoring (the "
    "paper's first-token rule, and the strict metric on the greedy answer). Two regimes, never ranked together: "
    "per prompt (ICL and the task vector of the test prompt's own demonstrations, from the study's results) and "
    "task level (one vector per task, from one fixed pool of demonstration sets drawn from the task's pairs that "
    "are no dev or test query; the same pool for every task-level method). Every choice (block, strength) is made "
    "on the bare dev queries; the table gives how many configurations each method tried, the labelled examples it "
    "used (pool and dev queries) and the parameters trained (none). Gap closed: (method - bare) / (ICL - bare) over "
    "the tasks where ICL works and a pool exists, with a two-level bootstrap interval. Costs are token positions "
    "run through the model, in units of one k-shot ICL forward: per query (the first answer token) and one-off "
    "(the vector and the dev choice; a backward pass's positions are given apart); seconds are in the step's log. "
    "KL to ICL: KL(ICL's next-token distribution || the method's) on each test prompt, in nats, averaged (not "
    "measured for the per-prompt task vector)."
)


def _methods_parts(study: StudyResults, out: Path, models: list[str], metrics: dict) -> tuple[list, list[dict]]:
    parts, rows = [], []
    for model in models:
        comparison = study.analysis(model).methods
        model_metrics = metrics["models"][model]["methods"]
        figures = {
            "methods_cost": compared_figures.cost_figure(comparison, model_metrics),
            "methods_tasks": compared_figures.heatmap_figure(comparison),
            "methods_heads": compared_figures.agreement_figure(comparison, model_metrics),
        }
        _write_figures({name: files for name, files in figures.items() if files is not None}, out, model)
        rows += compared.table_rows(comparison, model_metrics)
        parts.append((comparison, model_metrics, compared.summary_sentences(comparison, model_metrics), figures))
    return parts, rows


def headline_panels(metrics: dict) -> list[tuple[str, dict[str, list[tuple[str, float, list]]]]]:
    """One panel per extended study, from the report's own metrics (means over the tasks where ICL works,
    with their intervals): (title, model -> [(bar label, mean, interval)]): the task vector against the
    function vector; ICL and the task vector at the fewest and the most demonstrations; the task vector
    in its own prompt format and in the others'."""
    models = metrics["models"]

    def bars(entry: dict | None, keys: list[tuple[str, str]]) -> list[tuple[str, float, list]]:
        out = []
        for label, path in keys:
            value = entry
            for part in path.split("/"):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, dict) and value.get("mean") is not None:
                out.append((label, value["mean"], value["ci"]))
        return out

    panels = []
    vectors_bars = {
        m: [
            (label, e["function_vectors"]["icl_works"][key], e["function_vectors"]["icl_works"][f"{key}_ci"])
            for label, key in (("task vector", "tv"), ("function vector", "fv"))
            if e["function_vectors"]["icl_works"].get(key) is not None
        ]
        for m, e in models.items()
        if "function_vectors" in e
    }
    if any(vectors_bars.values()):
        panels.append(("Task vector and function vector\n(same test prompts)", vectors_bars))
    travel_bars = {}
    for m, e in models.items():
        ks = sorted(int(k) for k in e.get("travel", {}).get("tv_by_k", {}))
        if len(ks) > 1:
            low, high = str(ks[0]), str(ks[-1])
            travel_bars[m] = bars(
                e["travel"],
                [
                    (f"ICL, k={low}", f"icl_by_k/{low}"),
                    (f"ICL, k={high}", f"icl_by_k/{high}"),
                    (f"TV, k={low}", f"tv_by_k/{low}"),
                    (f"TV, k={high}", f"tv_by_k/{high}"),
                ],
            )
    if any(travel_bars.values()):
        panels.append(("Demonstrations per prompt", travel_bars))
    formats_bars = {
        m: bars(e.get("formats"), [("TV, own format", "tv_own"), ("TV, other formats", "tv_other")])
        for m, e in models.items()
    }
    formats_bars = {m: b for m, b in formats_bars.items() if b}
    if formats_bars:
        panels.append(("Prompt formats", formats_bars))
    return panels


def headline_figure(metrics: dict) -> dict[str, bytes] | None:
    """:func:`headline_panels` drawn as bars with their intervals, both models side by side; None where
    no study has a mean to show."""
    import matplotlib.pyplot as plt
    import numpy as np

    from taskvec.report.plotting import STYLE, save_figure

    panels = headline_panels(metrics)
    if not panels:
        return None
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for ax, (title, by_model) in zip(axes[0], panels):
            labels = list(dict.fromkeys(label for b in by_model.values() for label, _, _ in b))
            width = 0.8 / max(1, len(labels))
            names = list(by_model)
            for j, label in enumerate(labels):
                xs, ys, lows, highs = [], [], [], []
                for i, model in enumerate(names):
                    for name, mean, (lo, hi) in by_model[model]:
                        if name == label:
                            xs.append(i - 0.4 + width * (j + 0.5))
                            ys.append(mean)
                            lows.append(mean - lo)
                            highs.append(hi - mean)
                ax.bar(xs, ys, width * 0.9, color=colours[j % len(colours)], label=label)
                ax.errorbar(xs, ys, yerr=np.array([lows, highs]), fmt="none", ecolor="black", capsize=2, linewidth=0.8)
            ax.set_xticks(range(len(names)), names)
            ax.set_ylim(0, 1)
            ax.set_title(title, fontsize=9)
            ax.legend(fontsize=6.5, loc="upper right")
        axes[0][0].set_ylabel("mean test accuracy, tasks where ICL works")
        fig.tight_layout()
        return save_figure(fig)


def build_extended_report(
    result_files: Sequence[str | os.PathLike[str]],
    analysis_files: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
) -> Path:
    out = Path(out_dir)
    study = collect([Path(f) for f in result_files], [Path(f) for f in analysis_files])
    with_vectors = [m for m in study.models if study.analysis(m).vectors is not None]
    with_travel = [m for m in study.models if study.analysis(m).travel is not None]
    with_formats = [m for m in study.models if study.analysis(m).formats is not None]
    with_methods = [m for m in study.models if study.analysis(m).methods is not None]
    if not with_vectors and not with_travel and not with_formats and not with_methods:
        raise ConfigError(
            "no extended analysis among the files given (`taskvec function-vectors`, `taskvec travel` and "
            "`taskvec formats` write them)"
        )
    metrics = extended_metrics(study)
    store.write_json(metrics, out / "metrics.json")
    sections = []
    headline = headline_figure(metrics)
    if headline is not None:
        for fmt, data in headline.items():
            store.write_bytes(data, out / "figures" / f"headline.{fmt}")
        encoded = base64.b64encode(headline["png"]).decode()
        sections.append(
            "<h2 id='summary'>Summary</h2><figure><img alt='the extended studies at a glance' "
            f"src='data:image/png;base64,{encoded}'><figcaption class='note'>Each study's headline, both models: "
            "means over the tasks where ICL works, with their 95% intervals (which hold each task's chosen layer "
            "fixed). The sections below give the paired differences that compare them.</figcaption></figure>"
        )
    if with_vectors:
        parts, rows = _vectors_parts(study, out, with_vectors)
        write_table(rows, out / "tables", "function_vectors")
        sections.append(vectors_section.section_html(parts))
    if with_travel:
        parts, rows = _travel_parts(study, out, with_travel)
        write_table(rows, out / "tables", "travel")
        sections.append(travel.section_html(parts))
    if with_formats:
        parts, rows, transfer = _formats_parts(study, out, with_formats)
        write_table(rows, out / "tables", "formats")
        write_table(transfer, out / "tables", "formats_transfer")
        if not with_travel:
            sections.append("<h2 id='travel'>How far the task vector travels</h2>")
        sections.append(formats_section.section_html(parts))
    if with_methods:
        parts, rows = _methods_parts(study, out, with_methods, metrics)
        write_table(rows, out / "tables", "methods")
        sections.append(compared.section_html(parts, PROTOCOL))
    links = [
        (anchor, name)
        for anchor, name, shown in (
            ("summary", "Summary", headline is not None),
            ("function-vectors", "Function vectors", with_vectors),
            ("travel", "Travel", with_travel or with_formats),
            ("formats", "Prompt formats", with_formats),
            ("methods", "Methods compared", with_methods),
        )
        if shown
    ]
    body = f"""<p class="note">Made by <code>make reproduce-all</code> beside the default study's report
(<a href="../index.html">../index.html</a>), from the same prompts and results; not part of the default study,
whose time it would exceed.</p>
{"".join(sections)}"""
    index = out / "index.html"
    store.write_text(
        page("taskvec: extended studies", "In-context learning creates task vectors: extended studies", links, body),
        index,
    )
    return index
