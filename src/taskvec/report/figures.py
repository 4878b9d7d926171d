"""Figures as PNG bytes (deterministic: no timestamps in the metadata)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from taskvec.report.collect import StudyResults  # noqa: E402


def accuracy_by_layer_png(study: StudyResults, model: str) -> bytes:
    """Dev-set task-vector accuracy against the patched layer, one line per task, and their mean."""
    rows = study.for_model(model)
    n_layers = study.n_layers(model)
    layers = np.arange(n_layers)
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    for r in rows:
        ax.plot(layers, r.scores.dev_by_layer, linewidth=1.2, alpha=0.75, label=r.task)
    mean = np.mean([r.scores.dev_by_layer for r in rows], axis=0)
    ax.plot(layers, mean, color="black", linewidth=2.6, label="mean")
    ax.axvline(int(np.argmax(mean)), color="black", linestyle=":", linewidth=1)
    ax.set_xlabel(f"patched layer (decoder block output, 0 to {n_layers - 1})")
    ax.set_ylabel("task-vector accuracy on dev prompts")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, n_layers - 1)
    ax.set_title(f"{model}: accuracy by layer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="upper left", frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
