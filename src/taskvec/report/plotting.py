"""What every figure of both reports shares: the style, and saving as deterministic PNG and SVG bytes
(no dates in the metadata, fixed SVG ids). A change of look touches this module only (and reruns
only the report steps)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "figure.dpi": 110,
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "svg.hashsalt": "taskvec",
    "svg.fonttype": "none",
}


def save_figure(fig) -> dict[str, bytes]:
    out = {}
    for fmt, metadata in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, metadata=metadata)
        out[fmt] = buffer.getvalue()
    plt.close(fig)
    return out
