"""The extended studies' report (``reports/extended/``, made by `make reproduce-all`): one section per
registered study (:mod:`taskvec.studies`), each written by its own report module, assembled here on the
page shell and tables of :mod:`taskvec.report`.
It reads the study's results (for the tasks where ICL works, the first sampling's ICL and baseline,
the categories) and the extended analyses, and writes index.html, metrics.json, tables and figures
beside the main report, which it does not change. Nothing here names a study."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path

from taskvec import store, studies
from taskvec.errors import ArtifactError, ConfigError
from taskvec.report.collect import StudyResults, collect
from taskvec.report.page import escape, page
from taskvec.report.tables import write_table
from taskvec.studies.base import ModelContext, Study


def _first_sampling(study: StudyResults, model: str, metric: str) -> dict[str, float]:
    return {r.task: getattr(r.samples[0], metric) for r in study.for_model(model)}


def context(study: StudyResults, model: str, result) -> ModelContext:
    """What a study's report needs of the default study for ``model``: the tasks where ICL works (the
    paper's filter) among those the study's ``result`` ran on, first-sampling accuracies, categories."""
    ran = result.tasks
    return ModelContext(
        model,
        [r.task for r in study.icl_works_results(model) if r.task in ran],
        _first_sampling(study, model, "icl"),
        _first_sampling(study, model, "baseline"),
        {r.task: r.category for r in study.for_model(model)},
    )


def read_studies(files: dict[str, dict[str, tuple]]) -> dict[str, dict]:
    """The extended studies' results, ``{model: {study: result}}``, from their data files
    (``{model: {analysis: (table, metadata)}}``), each read by its study's report module."""
    out: dict[str, dict] = {}
    for model, by_kind in files.items():
        grouped: dict[str, dict] = {}
        for kind, file in by_kind.items():
            owner = studies.owner(kind)
            if owner is None:
                raise ArtifactError(
                    f"a {kind!r} file of {model} is not an analysis file (conflicting_tasks, robustness, "
                    "vocabulary, " + ", ".join(studies.data_names()) + ")"
                )
            grouped.setdefault(owner.name, {})[kind] = file
        for name, given in grouped.items():
            declared = studies.get(name)
            if set(given) != set(declared.data):
                raise ConfigError(
                    f"{model}: give every file of `taskvec {declared.command}` ({', '.join(declared.data)}); "
                    f"got {', '.join(sorted(given))}"
                )
        out[model] = {name: studies.report_module(studies.get(name)).read(given) for name, given in grouped.items()}
    return out


def _ran(study: StudyResults, declared: Study) -> list[str]:
    return [m for m in study.models if study.analysis(m).extended.get(declared.name) is not None]


def extended_metrics(study: StudyResults) -> dict:
    """Per model and task, each registered study's task metrics; per model, each study's metrics (means
    over the tasks where ICL works, with their intervals) under its name."""
    out: dict = {"models": {}}
    for model in study.models:
        entry: dict = {"tasks": {}}
        for declared in studies.registry().values():
            result = study.analysis(model).extended.get(declared.name)
            if result is None:
                continue
            per_task, model_metrics = studies.report_module(declared).metrics(result, context(study, model, result))
            for task, values in per_task.items():
                entry["tasks"].setdefault(task, {}).update(values)
            entry[declared.name] = model_metrics
        if entry["tasks"]:
            out["models"][model] = entry
    return out


def headline_panels(metrics: dict) -> list[tuple[str, dict[str, list[tuple[str, float, list]]]]]:
    """One panel per registered study that draws one, from the report's own metrics (means over the tasks
    where ICL works, with their intervals): (title, model -> [(bar label, mean, interval)])."""
    panels = []
    for declared in _summary_order():
        panel = studies.report_module(declared).headline(metrics["models"])
        if panel is not None:
            panels.append(panel)
    return panels


def _summary_order() -> list[Study]:
    return sorted(studies.registry().values(), key=lambda s: (s.summary_order, s.order, s.name))


def findings(metrics: dict) -> list[str]:
    """The summary's findings, each study's computed from the report's metrics, the matched methods
    comparison first (:attr:`Study.summary_order`)."""
    return [
        line for declared in _summary_order() for line in studies.report_module(declared).findings(metrics["models"])
    ]


def _write_section(declared: Study, section, out: Path) -> None:
    """A study's tables and figures, each one it declares (a name it does not declare is refused: every
    file written here is a declared output of the workflow's rule)."""
    undeclared = (set(section.tables) - set(declared.tables)) | (set(section.figures) - set(declared.figures))
    if undeclared:
        raise ValueError(f"the {declared.name} study writes {sorted(undeclared)}, which it does not declare")
    for name, rows in section.tables.items():
        write_table(rows, out / "tables", name)
    for name, by_model in section.figures.items():
        for model, files in by_model.items():
            for fmt, data in files.items():
                store.write_bytes(data, out / "figures" / f"{name}_{model}.{fmt}")


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
        most = max(len({label for b in by_model.values() for label, _, _ in b}) for _, by_model in panels)
        # a panel of many bars puts its legend under it, where it covers no bar
        fig, axes = plt.subplots(
            1, len(panels), figsize=(3.6 * len(panels), 3.4 + 0.22 * max(0, most - 4)), squeeze=False
        )
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
            if len(labels) > 4:
                ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
            else:
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
    study = collect([Path(f) for f in result_files], [Path(f) for f in analysis_files], read_others=read_studies)
    present = {name: _ran(study, declared) for name, declared in studies.registry().items()}
    if not any(present.values()):
        raise ConfigError(
            "no extended analysis among the files given ("
            + ", ".join(f"`taskvec {s.command}`" for s in studies.registry().values())
            + " write them)"
        )
    metrics = extended_metrics(study)
    store.write_json(metrics, out / "metrics.json")
    sections = []
    headline = headline_figure(metrics)
    lines = findings(metrics)
    if lines:
        sections.append(
            "<h2 id='summary'>Summary</h2><ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"
        )
    if headline is not None:
        for fmt, data in headline.items():
            store.write_bytes(data, out / "figures" / f"headline.{fmt}")
        encoded = base64.b64encode(headline["png"]).decode()
        sections.append(
            ("" if lines else "<h2 id='summary'>Summary</h2>") + "<figure><img alt='the extended studies at a glance' "
            f"src='data:image/png;base64,{encoded}'><figcaption class='note'>Each study's headline, both models: "
            "means over the tasks where ICL works, with their 95% intervals (which hold each task's chosen layer "
            "fixed). The sections below give the paired differences that compare them.</figcaption></figure>"
        )
    links = [("summary", "Summary")] if headline is not None or lines else []
    for name, declared in studies.registry().items():
        models = present[name]
        within = studies.get(declared.within) if declared.within else None
        if models and within is not None and not present[within.name]:
            sections.append(f"<h2 id='{within.anchor}'>{within.heading}</h2>")
        if models or any(present[s.name] for s in studies.registry().values() if s.within == name):
            links.append((declared.anchor, declared.title))
        if not models:
            continue
        report = studies.report_module(declared)
        parts = []
        for model in models:
            result = study.analysis(model).extended[name]
            parts.append((context(study, model, result), result, metrics["models"].get(model, {}).get(name)))
        section = report.section(parts)
        _write_section(declared, section, out)
        sections.append(section.html)
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
