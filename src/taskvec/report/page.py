"""What both reports' pages share: the shell (inline CSS, navigation: a page opens from disk), and the
formatting of numbers, intervals, table rows and inline figures."""

from __future__ import annotations

import base64
import html

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


def number_text(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def names_text(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def escape(text) -> str:
    return html.escape(str(text))


def table_row(cells: list[tuple[str, str]], css: str = "") -> str:
    """cells: (text, class) pairs; text is already escaped."""
    attrs = f" class='{css}'" if css else ""
    return f"<tr{attrs}>" + "".join(f"<td class='{c}'>{t}</td>" if c else f"<td>{t}</td>" for t, c in cells) + "</tr>"


def interval_text(bounds: tuple[float, float]) -> str:
    return f"[{bounds[0]:.2f}, {bounds[1]:.2f}]"


def image(figure: dict[str, bytes], alt: str) -> str:
    """A figure's PNG inline, as a data URI."""
    return f"<img alt='{escape(alt)}' src='data:image/png;base64,{base64.b64encode(figure['png']).decode()}'>"


def page(title: str, heading: str, links: list[tuple[str, str]], body: str) -> str:
    """A whole self-contained page: ``links`` are (anchor, name) pairs for its navigation."""
    nav = " ".join(f"<a href='#{anchor}'>{name}</a>" for anchor, name in links)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title><style>{CSS}</style></head>
<body>
<h1>{heading}</h1>
<nav class="note">{nav}</nav>
{body}
</body></html>
"""
