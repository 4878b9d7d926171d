"""The methods comparison's section of the extended report: per model its sentences, the table (the
gap closed with its interval, the costs with their backward part) and its figures."""

from __future__ import annotations

from taskvec.report.page import escape, image, interval_text, table_row
from taskvec.studies.methods.numbers import MethodComparison, label, table_rows


def gap_text(row: dict) -> str:
    if row["gap_closed"] is None:
        return ""
    if row["gap_closed_low"] is None:
        return f"{row['gap_closed']:.2f}"
    return f"{row['gap_closed']:.2f} " + interval_text((row["gap_closed_low"], row["gap_closed_high"]))


def one_off_text(row: dict) -> str:
    """The one-off cost, with the backward passes' positions beside the forward ones where there are any."""
    if row["one_off_cost"] is None:
        return ""
    backward = row.get("one_off_backward_cost") or 0.0
    return f"{row['one_off_cost']:.0f}" + (f" + {backward:.0f} bwd" if backward >= 0.5 else "")


def section_html(parts: list[tuple[MethodComparison, dict, list[str], dict]], protocol: str) -> str:
    html = ["<h2 id='methods'>Methods compared</h2>", f"<p class='note'>{protocol}</p>"]
    for comparison, metrics, sentences, figures in parts:
        html.append(f"<h3>{escape(comparison.model)}</h3>")
        html.append("<ul>" + "".join(f"<li>{escape(s)}</li>" for s in sentences) + "</ul>")
        if metrics.get("methods"):
            head = (
                "<tr><th>regime</th><th>method</th><th>gap closed [95%]</th><th>accuracy</th><th>strict</th>"
                "<th>KL to ICL</th><th>per query</th><th>one-off</th><th>labelled</th><th>configurations</th>"
                "<th>trained</th><th>run</th></tr>"
            )
            rows = []
            for row in table_rows(comparison, metrics):

                def text(value, digits=2):
                    return "" if value is None else f"{value:.{digits}f}"

                cells = [
                    (escape(row["regime"]), ""),
                    (escape(label(row["method"])), ""),
                    (gap_text(row), "num"),
                    (text(row["accuracy"]), "num"),
                    (text(row["strict"]), "num"),
                    (text(row["kl_from_icl"]), "num"),
                    (text(row["per_query_cost"]), "num"),
                    (one_off_text(row), "num"),
                    (text(row["labelled_examples"], 0), "num"),
                    ("" if row["configurations"] is None else str(row["configurations"]), "num"),
                    ("" if row["trainable_parameters"] is None else str(row["trainable_parameters"]), "num"),
                    (escape(row["gate"]), ""),
                ]
                rows.append(table_row(cells))
            html.append(f"<table>{head}{''.join(rows)}</table>")
        for name, figure in figures.items():
            if figure is not None:
                html.append(f"<figure>{image(figure, name)}</figure>")
    return "".join(html)
