"""The protocol every vector method implements, over the one intervention record
(:class:`taskvec.hooks.intervention.Intervention`).

A :class:`Method` says, as data, where its vector goes (its ``site``: the residual stream after a
block, what an attention or MLP adds to it, the heads' outputs), how (``replace`` the value, ``add``
to it with a strength, ``rotate`` it, or map it by a matrix), at which positions in the query's text
and while an answer is generated, which blocks (``layers``: one chosen on held-out pairs, every block
at once, or blocks 0 to L with L chosen) and which strengths its choice tries. Its :meth:`extract`
makes a :class:`Vectors` (one row per block, and what else the method carries as typed fields: heads,
trained coefficients, a training record) from a pool of demonstration sets
(:class:`taskvec.prompts.Prompt`: demonstrations and dummy queries, none of them a query the vector is
then judged on); its :meth:`intervention` turns vectors and a choice into the record the forward
passes apply. Every method here is *task level*: one vector per task from the pool.

A method's module keeps torch and the model code inside its functions, so that the registry
(:mod:`taskvec.methods`) lists the methods without loading them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from taskvec.hooks.intervention import Intervention, Interventions
    from taskvec.methods.search import Choice
    from taskvec.models import LoadedModel
    from taskvec.prompts import Prompt, PromptFormat

# "one": after one block, chosen on held-out pairs; "every": at every block at once; "up_to": at
# blocks 0 to L together, L chosen on held-out pairs
LAYERS = ("one", "every", "up_to")


@dataclasses.dataclass(frozen=True)
class NoSettings:
    """A method with nothing to set beyond the protocol's pool and choice."""


@dataclasses.dataclass(frozen=True)
class Vectors:
    """A method's vectors: ``values``, one row per block (``[n_layers, width]``), what its
    intervention writes or reads from. Methods that carry more subclass this with typed fields."""

    values: np.ndarray

    def file_metadata(self) -> dict:
        """What a vector file records of it beyond its rows (JSON-ready)."""
        return {}

    def comparison_metadata(self) -> dict:
        """What the methods comparison records of it, per task (JSON-ready, the same on a rerun)."""
        return {}


@dataclasses.dataclass(frozen=True)
class Method:
    """One way to turn demonstrations into a vector. Subclasses implement :meth:`make` (and, where
    the rows of a vector file are not the vectors' values, :meth:`rows` and :meth:`from_rows`)."""

    name: str
    label: str  # what the report calls it
    summary: str  # one line, for `taskvec vector --help` and the comparison's metadata
    operation: str  # an Intervention's operation: "replace", "add", "rotate" or "linear"
    generation_positions: str  # where the vector goes while an answer is generated (an Intervention's positions)
    strengths: tuple[float, ...]  # what the choice tries; a replacing method has no strength
    site: str = "block_output"
    positions: str = "last"  # where the vector goes in the query's text, for its first answer token
    layers: str = "one"
    order: int = 100  # where it comes in lists (the registry's order)
    # the registered method this one estimates more cheaply (its contrast in the report)
    estimates: str | None = None
    # the method every other task-level method is contrasted with in the report
    reference: bool = False
    # what the report says of its label controls, where they keep more than the pool
    control_note: str = ""
    regime: str = "task_level"

    Settings: ClassVar[type] = NoSettings

    def __post_init__(self) -> None:
        if self.layers not in LAYERS:
            raise ValueError(f"layers must be one of {LAYERS}, not {self.layers!r}")

    # ---- what it is ---------------------------------------------------------------------------
    @property
    def every_layer(self) -> bool:
        return self.layers == "every"

    @property
    def takes_strength(self) -> bool:
        return self.operation != "replace"

    @property
    def trained(self) -> bool:
        """Whether its extraction trains numbers on the pool (it then has one configuration)."""
        return False

    @property
    def sites(self) -> tuple[str, ...]:
        """Every site the method writes."""
        return (self.site,)

    def trainable_parameters(self, n_layers: int) -> int:
        """The numbers its extraction trains."""
        return 0

    @property
    def default_strength(self) -> float:
        """The strength used where nothing is held out to choose one (the layer is given): 1, or the
        middle of the grid for a method without a layer to give."""
        return self.strengths[len(self.strengths) // 2] if self.every_layer else 1.0

    def description(self, n_layers: int | None) -> dict:
        """How the comparison's metadata describes it."""
        return {
            "summary": self.summary,
            "site": self.site,
            "operation": self.operation,
            "layers": self.layers,
            "strengths": list(self.strengths),
            "trainable_parameters": self.trainable_parameters(n_layers) if n_layers else 0,
        }

    # ---- making it ----------------------------------------------------------------------------
    def settings(self, given: dict | None = None):
        """Its settings: the authors' defaults, overridden by ``given`` (field -> value)."""
        return self.Settings(**(given or {}))

    def extract(
        self,
        lm: LoadedModel,
        pool: Sequence[Prompt],
        fmt: PromptFormat,
        batch_size: int = 16,
        settings=None,
        keep: Vectors | None = None,
    ) -> Vectors:
        """The method's vectors from a pool of demonstration sets. ``keep``: the method's vectors on
        the real pool, where this pool is one of its label controls (what the method chose there, its
        heads or its trained coefficients, is kept)."""
        return self.make(lm, pool, fmt, batch_size, settings if settings is not None else self.settings(), keep)

    def make(self, lm, pool, fmt, batch_size, settings, keep) -> Vectors:
        raise NotImplementedError

    # ---- choosing its configuration -----------------------------------------------------------
    def choose(
        self,
        lm: LoadedModel,
        vectors: Vectors,
        queries: Sequence[str],
        answers: Sequence[Sequence[str]],
        scoring: str,
        strengths: Sequence[float] | None = None,
        batch_size: int = 16,
    ) -> Choice:
        """Its configuration on held-out bare queries (:func:`taskvec.methods.search.choose`)."""
        from taskvec.methods.search import choose

        return choose(lm, self, vectors, queries, answers, scoring, strengths, batch_size)

    def settle(self, vectors: Vectors, choice: Choice) -> tuple[Vectors, dict]:
        """The vectors a choice settles on, and what its interventions still take (``extra``): by
        default the vectors as made and the choice's extra settings. A method whose choice picks among
        vectors (the function vector's head count) returns the chosen one and nothing extra, so that
        a vector file holds what is applied."""
        return vectors, dict(choice.extra)

    # ---- the vector file ----------------------------------------------------------------------
    def rows(self, vectors: Vectors) -> np.ndarray:
        """A vector file's rows (``[n_layers, width]``)."""
        return vectors.values

    def from_rows(self, rows: np.ndarray, metadata: dict) -> Vectors:
        """The inverse of :meth:`rows` (with the file's metadata)."""
        return Vectors(rows)

    # ---- the controls -------------------------------------------------------------------------
    def random_like(self, vectors: Vectors, seed: int) -> Vectors:
        """The random control: each block's vector in a random direction at the same norm (what the
        method chose on the real pool kept)."""
        from taskvec.methods.pool import random_vectors_like

        return dataclasses.replace(vectors, values=random_vectors_like(vectors.values, seed))

    # ---- applying it --------------------------------------------------------------------------
    def value(self, vectors: np.ndarray, layer: int, strength: float) -> np.ndarray:
        """What the intervention writes at the site of ``layer``: the vector itself, the scaled
        vector added, or (rotate) the strength times the block's unit direction."""
        if self.operation == "rotate":
            norm = float(np.linalg.norm(vectors[layer]))
            return vectors[layer] * (strength / norm if norm > 0 else 0.0)
        return vectors[layer] * (strength if self.operation == "add" else 1.0)

    def record(self, vectors: np.ndarray, layer, strength: float, positions: str, rows: int | None = None):
        """One block's record (``rows`` given: the same vector on each of that many rows)."""
        from taskvec.hooks.intervention import Intervention

        value = self.value(vectors, layer, strength).astype(np.float32)
        if rows is None:
            return Intervention(layer, value, site=self.site, positions=positions, operation=self.operation)
        return Intervention(
            [layer] * rows,
            np.repeat(value[None], rows, axis=0),
            site=self.site,
            positions=positions,
            operation=self.operation,
        )

    def intervention(
        self,
        vectors: Vectors | np.ndarray,
        layer: int,
        strength: float,
        rows: int,
        generating: bool = False,
        **extra,
    ) -> Intervention | Interventions:
        """The method's intervention on ``rows`` texts: at the positions it takes in the query's text,
        or (``generating``) at those it takes while an answer is generated. A method at every block is
        one record per block (``layer`` is then not used). ``extra``: what else the method chose
        (:attr:`taskvec.methods.search.Choice.extra`)."""
        from taskvec.hooks.intervention import Interventions

        values = vectors.values if isinstance(vectors, Vectors) else vectors
        positions = self.generation_positions if generating else self.positions
        if self.every_layer:
            return Interventions(tuple(self.record(values, at, strength, positions) for at in range(len(values))))
        if self.layers == "up_to":
            return Interventions(tuple(self.record(values, at, strength, positions) for at in range(layer + 1)))
        return self.record(values, layer, strength, positions, rows)

    def where(self, layer: int, strength: float) -> str:
        """How the vector is applied, in words (for the command line's output)."""
        if self.layers == "up_to":
            return f"replaces the last token's attention heads' outputs in blocks 0 to {layer}"
        if self.operation == "replace":
            return f"replaces the last token's residual stream after block {layer}"
        if self.every_layer:
            return f"x {strength:g} turns the {self.site.replace('_', ' ')} of every block at every position"
        return (
            f"x {strength:g} is added to the residual stream after block {layer} at the last token and every "
            "generated one"
        )

    def swept_values(
        self,
        vectors: np.ndarray,
        strength: float,
        n_queries: int,
        bare_states: np.ndarray | None = None,
        **extra,
    ) -> np.ndarray:
        """For the layer sweep (:func:`taskvec.forward.patched.patched_sweep`, which replaces the last
        position's stream after each block): ``[n_queries, n_layers, hidden]``, the value each query's
        stream takes there under this method. An additive method needs the queries' own streams
        (``bare_states``, :func:`taskvec.forward.capture.last_token_states`, read once for every strength)."""
        if self.layers != "one" or self.site != "block_output" or self.positions != "last":
            raise ValueError(f"{self.name} is not patched at one block's last-token stream: no layer sweep")
        if self.operation == "replace":
            return np.repeat(vectors[None], n_queries, axis=0)
        if self.operation != "add":
            raise ValueError(f"{self.name} ({self.operation}) has no layer sweep: its value depends on the stream")
        return bare_states + strength * vectors[None]

    @property
    def sweepable(self) -> bool:
        """Whether the layer sweep's shortcut (one prefix pass, the last token per block) applies."""
        return (
            self.layers == "one"
            and self.site == "block_output"
            and self.positions == "last"
            and self.operation in ("replace", "add")
        )
