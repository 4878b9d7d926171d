"""Methods that turn demonstrations into a vector for a frozen model, each a plugin over the one
intervention record (:class:`taskvec.hooks.intervention.Intervention`).

A :class:`Method` says, as data, where its vector goes (the site: the residual stream after a block),
how (``replace`` the value or ``add`` to it, with a strength), at which positions while an answer is
generated, and which strengths its layer choice tries; its ``extract`` makes one vector per block from
a pool of demonstration sets (:class:`taskvec.prompts.Prompt`: demonstrations and dummy queries, none
of them a query the vector is then judged on). Every method here is *task level*: one vector per task
from the pool, the same for every query.

- ``task_vector`` (Hendel et al., 2023, averaged over demonstration sets): theta, the last token's
  residual stream after each block with the demonstrations and a dummy query, averaged over the
  pool's dummy queries; it *replaces* the bare query's last-token stream after one block.
- ``mean_difference`` (contrastive activation addition, Rimsky et al. 2024, applied to ICL): the mean
  over the pool's dummy queries of the last-token stream after each block *with* the demonstrations
  minus the same query's stream *without* them (its bare query); ``strength`` times it is *added* to
  the stream after one block at the bare query's last token and at every generated token, as CAA adds
  its vector at every position after the prompt. The strength is chosen with the layer.

Both read the same forward passes (theta is the first term of the mean difference), and both are
judged by the same layer sweep: for an additive method the sweep's replaced value is the bare query's
own stream plus the scaled vector, which is what adding does at that position.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from taskvec.errors import ConfigError

if TYPE_CHECKING:  # the command line lists the methods without loading torch
    from taskvec.hooks.intervention import Intervention
    from taskvec.models import LoadedModel
    from taskvec.prompts import Prompt, PromptFormat


def _theta(lm: LoadedModel, pool: Sequence[Prompt], fmt: PromptFormat, batch_size: int) -> np.ndarray:
    from taskvec.extract import task_vectors

    return task_vectors(lm, pool, fmt, batch_size).mean(axis=0)


def _mean_difference(lm: LoadedModel, pool: Sequence[Prompt], fmt: PromptFormat, batch_size: int) -> np.ndarray:
    from taskvec.forward.capture import last_token_states

    bare = last_token_states(lm, [fmt.query.format(x=d) for p in pool for d in p.dummies], batch_size)
    # theta averages each prompt's dummies, then the prompts: the same weights as over all dummies,
    # since every prompt of the pool has as many
    return _theta(lm, pool, fmt, batch_size) - bare.mean(axis=0)


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    summary: str  # one line, for `taskvec vector --help`
    operation: str  # "replace" or "add"
    generation_positions: str  # where the vector goes while an answer is generated (an Intervention's positions)
    strengths: tuple[float, ...]  # what the layer choice tries; a replacing method has no strength
    extract: Callable[[LoadedModel, Sequence[Prompt], PromptFormat, int], np.ndarray]  # [n_layers, hidden]
    site: str = "block_output"
    regime: str = "task_level"

    @property
    def default_strength(self) -> float:
        """The strength used where the layer is given (nothing is held out to choose one)."""
        return 1.0

    def value(self, vectors: np.ndarray, layer: int, strength: float) -> np.ndarray:
        """What the intervention writes at the site: theta itself, or the scaled vector added."""
        return vectors[layer] * (strength if self.operation == "add" else 1.0)

    def intervention(
        self, vectors: np.ndarray, layer: int, strength: float, rows: int, generating: bool = False
    ) -> Intervention:
        """The method's intervention on ``rows`` texts: at their last position, or (``generating``) at
        the positions it takes while an answer is generated."""
        from taskvec.hooks.intervention import Intervention

        value = self.value(vectors, layer, strength).astype(np.float32)
        return Intervention(
            [layer] * rows,
            np.repeat(value[None], rows, axis=0),
            site=self.site,
            positions=self.generation_positions if generating else "last",
            operation=self.operation,
        )

    def swept_values(
        self, vectors: np.ndarray, strength: float, n_queries: int, bare_states: np.ndarray | None = None
    ) -> np.ndarray:
        """For the layer sweep (:func:`taskvec.forward.patched.patched_sweep`, which replaces the last
        position's stream after each block): ``[n_queries, n_layers, hidden]``, the value each query's
        stream takes there under this method. An additive method needs the queries' own streams
        (``bare_states``, :func:`taskvec.forward.capture.last_token_states`, read once for every strength)."""
        if self.operation == "replace":
            return np.repeat(vectors[None], n_queries, axis=0)
        return bare_states + strength * vectors[None]


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "task_vector",
            "theta, averaged over demonstration sets, replaces the bare query's last-token stream after one block",
            operation="replace",
            generation_positions="last",
            strengths=(1.0,),
            extract=_theta,
        ),
        Method(
            "mean_difference",
            "the mean stream with minus without the demonstrations, scaled and added after one block at the "
            "query's last token and every generated one",
            operation="add",
            generation_positions="generated",
            strengths=(0.5, 1.0, 2.0, 4.0),
            extract=_mean_difference,
        ),
    )
}


def get(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}", f"choose one of {', '.join(METHODS)}") from None
