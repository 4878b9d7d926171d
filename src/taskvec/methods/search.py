"""How a method's configuration is chosen on held-out queries: the block (one block, every block, or
blocks 0 to L) and the strength, by the paper's first-token rule, with every configuration tried
recorded (:class:`Choice`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from taskvec.models import LoadedModel


@dataclasses.dataclass(frozen=True)
class Choice:
    """A method's configuration chosen on held-out queries: the block (-1 for a method at every
    block) and the strength of best first-token accuracy, and every configuration's accuracy
    (``grid``: per strength, the accuracy after each block, or one accuracy for a method at every block;
    None where that configuration was not tried). ``extra``: what else a method chose (its own
    settings' names and values, passed on to its intervention), and ``extra_grid`` what it tried."""

    layer: int
    strength: float
    accuracy: float
    grid: dict[float, list[float | None]]  # None: a configuration not tried
    swept_at: float = 1.0  # the strength of the layer sweep
    extra: dict = dataclasses.field(default_factory=dict)
    extra_configurations: int = 0  # configurations tried beside ``grid``'s (at other extra settings)
    extra_grid: dict = dataclasses.field(default_factory=dict)

    @property
    def configurations(self) -> int:
        return sum(value is not None for row in self.grid.values() for value in row) + self.extra_configurations

    @property
    def by_layer(self) -> list[float | None]:
        """The layer sweep's accuracies (at :attr:`swept_at`)."""
        return self.grid[self.swept_at]

    def record(self) -> dict:
        """The choice as the comparison's metadata records it (JSON-ready)."""
        out = {
            "layer": self.layer,
            "strength": self.strength,
            "dev_accuracy": self.accuracy,
            "configurations": self.configurations,
            "grid": {str(s): a for s, a in self.grid.items()},
        }
        if self.extra:
            out["chosen"] = dict(self.extra)
            out["other_grids"] = dict(self.extra_grid)
        return out


def scorer(lm: LoadedModel, answers: Sequence[Sequence[str]], scoring: str):
    """The dev choice's score of predicted next tokens: the share whose decoded text the queries'
    ``answers`` accept by the task's first-token rule."""
    from taskvec.evaluate import token_decoder
    from taskvec.scoring import first_token_correct

    decode = token_decoder(lm)

    def accuracy_of(tokens) -> float:
        return float(np.mean([first_token_correct(decode(t), a, scoring) for t, a in zip(tokens, answers)]))

    return accuracy_of


def choose(
    lm: LoadedModel,
    method,
    vectors,
    queries: Sequence[str],
    answers: Sequence[Sequence[str]],
    scoring: str,
    strengths: Sequence[float] | None = None,
    batch_size: int = 16,
    bare_states: np.ndarray | None = None,
    **extra,
) -> Choice:
    """Choose the block and strength of ``method`` (a :class:`taskvec.methods.base.Method`) on
    ``queries`` (bare query texts) by the paper's first-token rule against ``answers``. A method at
    one block: the block of best accuracy in the layer sweep at strength 1 (the vector's own scale;
    the grid's first strength where 1 is not in it), then the grid's strengths at that block; so
    that every method tries about as many configurations as there are blocks. A method at every
    block: one patched pass per strength. A method at blocks 0 to L (its patch at the last token
    only): the queries' tokens but the last run once, then the last token once per L on that
    prefix's cache. Ties: the earliest block, then the first strength of the grid (``strengths``,
    default the method's). ``bare_states``: the queries' own last-token streams
    (:func:`taskvec.forward.capture.last_token_states`), where a caller choosing several times on the
    same queries has read them once. ``extra``: settings of the method's own, fixed here, passed to its
    intervention."""
    from taskvec.evaluate import choose_layer
    from taskvec.forward.capture import last_token_states
    from taskvec.forward.patched import next_token_variants, patched_next_tokens, patched_sweep

    strengths = tuple(strengths or method.strengths)
    values = getattr(vectors, "values", vectors)  # a method's Vectors, or their rows
    accuracy_of = scorer(lm, answers, scoring)

    def intervention(layer: int, strength: float):
        return method.intervention(vectors, layer, strength, len(queries), **extra)

    grid: dict[float, list[float | None]] = {}
    if method.every_layer:
        for value in strengths:
            grid[value] = [accuracy_of(patched_next_tokens(lm, queries, intervention(-1, value), batch_size))]
        best = max(a[0] for a in grid.values())
        return Choice(-1, next(v for v, a in grid.items() if a[0] == best), best, grid, extra=dict(extra))
    if method.layers == "up_to":
        records = [intervention(last, 1.0) for last in range(len(values))]
        curve = [accuracy_of(tokens) for tokens in next_token_variants(lm, queries, records, batch_size).tokens]
        layer = choose_layer(curve)
        return Choice(layer, 1.0, curve[layer], {1.0: curve}, extra=dict(extra))
    swept_at = 1.0 if 1.0 in strengths else strengths[0]
    if bare_states is None and method.operation != "replace":
        bare_states = last_token_states(lm, queries, batch_size)
    swept_values = method.swept_values(values, swept_at, len(queries), bare_states, **extra)
    swept = patched_sweep(lm, queries, swept_values, batch_size=batch_size)
    curve = [accuracy_of(column) for column in swept.T]
    layer = choose_layer(curve)
    for value in strengths:
        if value == swept_at:
            grid[value] = curve
        else:
            row: list[float | None] = [None] * len(values)
            row[layer] = accuracy_of(patched_next_tokens(lm, queries, intervention(layer, value), batch_size))
            grid[value] = row
    best = max(a[layer] for a in grid.values())
    chosen = next(v for v, a in grid.items() if a[layer] == best)
    return Choice(layer, chosen, best, grid, swept_at, extra=dict(extra))
