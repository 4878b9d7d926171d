"""The prompt formats' part of the extended report: the transfer heatmap, the tables and the HTML
section (the numbers and sentences come from :mod:`taskvec.studies.formats.numbers`)."""

from __future__ import annotations

import numpy as np

from taskvec.report.numbers import rounded
from taskvec.report.page import image
from taskvec.studies.formats.numbers import Formats, draw_interval, with_ci


def transfer_figure(result: Formats, tasks: list[str]) -> dict[str, bytes]:
    """The transfer matrix: mean task-vector accuracy over ``tasks``, theta's format down, the bare
    query's format across, each cell annotated."""
    import matplotlib.pyplot as plt

    from taskvec.report.plotting import STYLE, save_figure

    tasks = tasks or list(result.tasks)
    names = result.names
    matrix = np.array([[np.mean([result.tasks[t].accuracy("tv", b, a) for t in tasks]) for b in names] for a in names])
    with plt.rc_context(STYLE | {"axes.grid": False}):
        size = 1.1 + 0.75 * len(names)
        fig, ax = plt.subplots(figsize=(size + 1.2, size))
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        for i in range(len(names)):
            for j in range(len(names)):
                colour = "black" if matrix[i, j] > 0.6 else "white"
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color=colour, fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("format of the bare query (patched)")
        ax.set_ylabel("format theta was extracted in")
        fig.colorbar(image, ax=ax, label=f"test accuracy ({len(tasks)} tasks)")
        ax.set_title(f"{result.model}: theta across formats")
        fig.tight_layout()
        return save_figure(fig)


def table_rows(result: Formats) -> list[dict]:
    rows = []
    for task, r in result.tasks.items():
        row = {"model": result.model, "task": task, "layer": r.layer}
        for b in result.names:
            row[f"icl_{b}"] = rounded(r.accuracy("icl", b))
            row[f"bare_{b}"] = rounded(r.accuracy("bare", b))
            row[f"tv_{b}"] = rounded(r.accuracy("tv", b))
        rows.append(row)
    return rows


def transfer_rows(result: Formats, kept: list[str]) -> list[dict]:
    """The transfer matrix over the tasks where ICL works, one row per (source, target) cell (empty
    cells where ICL works on none)."""
    means, draws = result.draws(kept) if kept else ({}, {})
    rows = []
    for a in result.names:
        for b in result.names:
            key = f"tv:{a}:{b}"
            lo, hi = draw_interval(draws, key) if kept else (float("nan"), float("nan"))
            rows.append(
                {"model": result.model, "source": a, "target": b, "n_tasks": len(kept),
                 "tv": rounded(means.get(key, float("nan"))), "ci_low": rounded(lo), "ci_high": rounded(hi)}
            )  # fmt: skip
    return rows


def section_html(parts: list[tuple[Formats, list[str], list[str], dict]]) -> str:
    """The formats part of the travel section: a note on the method, then per model its sentences, a
    table per format (template, the bare query token by token, ICL, the bare query, the task vector),
    the transfer matrix with intervals and its figure."""
    import html

    def shown(text: str) -> str:
        return html.escape(text.replace("\n", "\\n").replace("\t", "\\t"))

    out = [
        "<h3 id='formats'>Prompt formats</h3>",
        "<p class='note'>The study's test prompts (the same demonstrations, queries and dummy queries, first "
        "sampling) written in each format; theta is patched at the layer the study chose on dev in its own "
        "format. A format's bare query is its template up to the answer, without the spaces before it; inputs "
        "and answers drop the study's leading space where a template puts whitespace or a line start before "
        "them, so the study's format gives exactly the study's prompts. Every format is scored on every query "
        "with the task's first-token rule. The transfer matrix patches theta extracted in one format (rows) into "
        "the bare query of another (columns). Why the query matters: theta replaces the whole stream at the "
        "bare query's last token after the chosen layer, so what that token was (<code>-&gt;</code>, "
        "<code>:</code>, a tab) no longer counts; our hypothesis is that the layers above must then find the "
        "input by attending to the tokens before it. Two interventions test what they can (neither tells an "
        "input at position 0 apart from a first token that is an attention sink, as on a model without a start "
        "token): each format's own layer (chosen on the dev prompts written in that format, so that no format "
        "is judged at a layer chosen in another), and the bare query written after a neutral prefix (a newline) "
        "and patched with the format's own theta at the study's layer, so that the input is no longer the first "
        "token. Means are over the tasks where ICL works, with two-level bootstrap intervals that hold each "
        "task's layer fixed (never narrower than the Wilson interval of their prompts); contrasts are paired on "
        "the same queries, their intervals Bonferroni-adjusted over the study's five contrasts.</p>",
    ]
    for result, kept, sentences, figure in parts:
        means, draws = result.draws(kept) if kept else ({}, {})
        example_task = next((t for t in kept if t in result.query_tokens), next(iter(result.query_tokens), None))
        first = result.input_first()
        body = []
        for b in result.names:
            example = result.query_tokens.get(example_task, {}).get(b) if example_task else None
            tokens = " | ".join(shown(t) for t in example["tokens"]) if example else "n/a"
            cells = [
                html.escape(b),
                f"<code>{shown(result.templates[b]['demonstration'])}</code>",
                f"<code>{tokens}</code>" + (" (input first)" if b in first else ""),
            ]
            for key in (f"icl:{b}", f"bare:{b}", f"tv:{b}:{b}", f"tv_own_layer:{b}", f"tv_prefixed:{b}"):
                cells.append(html.escape(with_ci(means, draws, key)) if kept and key in draws else "n/a")
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        head = "".join(f"<th>{html.escape(b)}</th>" for b in result.names)
        matrix = []
        for a in result.names:
            cells = [f"<th>{html.escape(a)}</th>"]
            for b in result.names:
                value = with_ci(means, draws, f"tv:{a}:{b}") if kept else "n/a"
                cells.append(f"<td>{html.escape(value)}</td>")
            matrix.append("<tr>" + "".join(cells) + "</tr>")
        out += [
            f"<h4>{html.escape(result.model)}: prompt formats</h4>",
            "".join(f"<p>{html.escape(s)}</p>" for s in sentences),
            "<table><thead><tr><th>format</th><th>demonstration</th>"
            f"<th>bare query, token by token ({html.escape(example_task or 'no task')})</th><th>ICL</th>"
            "<th>bare query</th><th>task vector</th><th>TV, own layer</th>"
            f"<th>TV, {html.escape(repr(result.query_prefix))} before the query</th></tr></thead><tbody>"
            + "".join(body)
            + "</tbody></table>",
            "<table><thead><tr><th>theta from \\ into</th>"
            + head
            + "</tr></thead><tbody>"
            + "".join(matrix)
            + "</tbody></table>",
            f"<figure>{image(figure, f'{result.model}: task-vector accuracy across formats')}"
            "<figcaption class='note'>Theta extracted in one format (rows) patched into the bare query of another "
            "(columns): mean test accuracy over the tasks where ICL works; the diagonal is each format's own task "
            "vector.</figcaption></figure>",
        ]
    return "".join(out)
