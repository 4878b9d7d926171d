"""The task vector (Hendel et al., 2023), averaged over demonstration sets: theta, the last token's
residual stream after each block with the demonstrations and a dummy query, averaged over the pool's
dummy queries; it *replaces* the bare query's last-token stream after one block, chosen on held-out
pairs by the layer sweep."""

from __future__ import annotations

import dataclasses

import numpy as np

from taskvec.methods.base import Method, Vectors


def theta(lm, pool, fmt, batch_size: int) -> np.ndarray:
    """theta after every block, averaged over the pool's demonstration sets: ``[n_layers, hidden]``."""
    from taskvec.extract import task_vectors

    return task_vectors(lm, pool, fmt, batch_size).mean(axis=0)


@dataclasses.dataclass(frozen=True)
class TaskVector(Method):
    def make(self, lm, pool, fmt, batch_size, settings, keep) -> Vectors:
        return Vectors(theta(lm, pool, fmt, batch_size))


METHODS = (
    TaskVector(
        "task_vector",
        label="task vector, task level",
        summary="theta, averaged over demonstration sets, replaces the bare query's last-token stream after one block",
        operation="replace",
        generation_positions="last",
        strengths=(1.0,),
        order=10,
        reference=True,
    ),
)
