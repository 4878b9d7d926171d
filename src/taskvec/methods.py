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

- ``in_context_vector`` (Liu et al., ICML 2024; :func:`in_context_vector`): from the pool's labelled
  pairs, one direction per block; ``strength`` times each block's unit direction turns the MLP's
  output of *every* block at *every* position, prompt and generated tokens alike, by its authors'
  norm-preserving rule (the intervention record's ``rotate`` operation). There is no layer to choose:
  the strength is chosen on held-out pairs. Its site is the MLP's contribution to the residual
  stream: on Gemma 2 and 3 that is the MLP's output after its post-feed-forward norm (where the
  authors' code, written for models without that norm, would hook the MLP before it, and the norm
  would rescale the result).

- ``function_vector`` (Todd et al., ICLR 2024; :func:`function_vector_from_pool`): the pool's sets
  as labelled prompts; the heads of largest average indirect effect on those prompts with shuffled
  labels (each head's output at the last token set to its mean over the clean prompts: the rise in the
  answer's probability), their mean outputs summed in residual-stream space; ``strength`` times it is
  *added* after one block at the bare query's last token and every generated token, as the mean
  difference is. ``function_vector_attribution`` is the same vector with the heads ranked by
  attribution patching's first-order estimate of the same effect. Their authors add the vector at
  strength 1 after a block chosen on held-out data with a fixed head count; here the strength is
  chosen with the block, as for the mean difference, and the head count is the paper's 10 of GPT-J's
  448 heads scaled to the model.

- ``state_vector`` (Li et al., NeurIPS 2024; :func:`state_vector_from_pool`): the attention heads'
  outputs (the input of each block's attention output projection) at each demonstration's separator
  and at the query's last token of the pool's labelled prompts, averaged (the authors' *inner
  optimisation*); ``state_vector_momentum`` adds their *momentum optimisation*. Each *replaces* the
  bare query's last-token heads' outputs in blocks 0 to L together, L chosen on held-out pairs (the
  authors hard-code L per task and model; no selection code is released); generated tokens are not
  patched, as in the authors' code. The site is before the output projection in every architecture
  (on Gemma 2 and 3 the projection's output then passes the attention's post-norm, as in the
  unpatched model). Where the authors take every token of a separator that tokenizes into several,
  this takes the separator's last token.

- ``implicit_icl`` (Li et al., ICLR 2025; :mod:`taskvec.implicit_icl`): context vectors from the
  pool's pairs, each run alone (the attention's and the MLP's outputs at its last token, every
  block), injected at every block and every position as ``scale * x + weight * c`` with two
  coefficients per sub-layer and block trained by the authors' noisy self-calibration on the pool's
  own pairs: the one trained method (``learned``). Nothing is chosen on held-out pairs (one
  configuration); its row per block holds the context vectors and the coefficients. The
  shuffled-label control keeps the coefficients trained on the real pool.

The first two methods read the same forward passes (theta is the first term of the mean difference), and both are
judged by the same layer sweep: for an additive method the sweep's replaced value is the bare query's
own stream plus the scaled vector, which is what adding does at that position.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from taskvec import implicit_icl
from taskvec.errors import ConfigError
from taskvec.method_vectors import (
    function_vector_from_pool,
    in_context_vector,
    pool_pairs,
    state_vector_from_pool,
)

if TYPE_CHECKING:  # the command line lists the methods without loading torch
    from taskvec.hooks.intervention import Intervention, Interventions
    from taskvec.models import LoadedModel
    from taskvec.prompts import Prompt, PromptFormat


def _theta(
    lm: LoadedModel, pool: Sequence[Prompt], fmt: PromptFormat, batch_size: int, shared: dict | None = None
) -> np.ndarray:
    """theta averaged over the pool; ``shared`` (one dict per pool) keeps it for the other methods
    made from the same pool (the mean difference's first term)."""
    from taskvec.extract import task_vectors

    shared = {} if shared is None else shared
    if "theta" not in shared:
        shared["theta"] = task_vectors(lm, pool, fmt, batch_size).mean(axis=0)
    return shared["theta"]


def _mean_difference(
    lm: LoadedModel, pool: Sequence[Prompt], fmt: PromptFormat, batch_size: int, shared: dict | None = None
) -> np.ndarray:
    from taskvec.forward.capture import last_token_states

    bare = last_token_states(lm, [fmt.query.format(x=d) for p in pool for d in p.dummies], batch_size)
    # theta averages each prompt's dummies, then the prompts: the same weights as over all dummies,
    # since every prompt of the pool has as many
    return _theta(lm, pool, fmt, batch_size, shared) - bare.mean(axis=0)


def _function_vector(ranking: str) -> Callable[..., np.ndarray]:
    def extract(
        lm: LoadedModel, pool: Sequence[Prompt], fmt: PromptFormat, batch_size: int, shared: dict | None = None
    ) -> np.ndarray:
        return function_vector_from_pool(lm, pool, fmt, ranking, batch_size, shared)

    return extract


def _state_vector(momentum: bool) -> Callable[..., np.ndarray]:
    def extract(
        lm: LoadedModel, pool: Sequence[Prompt], fmt: PromptFormat, batch_size: int, shared: dict | None = None
    ) -> np.ndarray:
        return state_vector_from_pool(lm, pool, fmt, momentum, batch_size)

    return extract


LAYERS = ("one", "every", "up_to")


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    summary: str  # one line, for `taskvec vector --help`
    operation: str  # "replace", "add" or "rotate" (an Intervention's operations)
    generation_positions: str  # where the vector goes while an answer is generated (an Intervention's positions)
    strengths: tuple[float, ...]  # what the choice tries; a replacing method has no strength
    # (model, pool, format, batch size, what methods of one pool share) -> [n_layers, hidden]
    extract: Callable[..., np.ndarray]
    site: str = "block_output"
    regime: str = "task_level"
    positions: str = "last"  # where the vector goes in the query's text, for its first answer token
    # "one": after one block, chosen on held-out pairs; "every": at every block at once; "up_to": at
    # blocks 0 to L together, L chosen on held-out pairs
    layers: str = "one"
    # implicit ICL's rows (taskvec.implicit_icl): context vectors at the attention and MLP outputs and
    # their trained coefficients, not one vector per block
    learned: bool = False

    def __post_init__(self) -> None:
        if self.layers not in LAYERS:
            raise ValueError(f"layers must be one of {LAYERS}, not {self.layers!r}")

    @property
    def every_layer(self) -> bool:
        return self.layers == "every"

    @property
    def takes_strength(self) -> bool:
        return self.operation != "replace" and not self.learned

    @property
    def sites(self) -> tuple[str, ...]:
        """Every site the method writes."""
        return implicit_icl.SITES if self.learned else (self.site,)

    def trainable_parameters(self, n_layers: int) -> int:
        """The numbers it trains (two coefficients per sub-layer and block for implicit ICL)."""
        return 4 * n_layers if self.learned else 0

    def random_like(self, vectors: np.ndarray, seed: int) -> np.ndarray:
        """The random control: each block's vector (each context vector, keeping the trained
        coefficients) in a random direction at the same norm."""
        from taskvec.controls import random_vectors_like

        return implicit_icl.random_like(vectors, seed) if self.learned else random_vectors_like(vectors, seed)

    @property
    def default_strength(self) -> float:
        """The strength used where nothing is held out to choose one (the layer is given): 1, or the
        middle of the grid for a method without a layer to give."""
        return self.strengths[len(self.strengths) // 2] if self.every_layer else 1.0

    def value(self, vectors: np.ndarray, layer: int, strength: float) -> np.ndarray:
        """What the intervention writes at the site of ``layer``: theta itself, the scaled vector
        added, or (rotate) the strength times the block's unit direction."""
        if self.operation == "rotate":
            norm = float(np.linalg.norm(vectors[layer]))
            return vectors[layer] * (strength / norm if norm > 0 else 0.0)
        return vectors[layer] * (strength if self.operation == "add" else 1.0)

    def intervention(
        self, vectors: np.ndarray, layer: int, strength: float, rows: int, generating: bool = False
    ) -> Intervention | Interventions:
        """The method's intervention on ``rows`` texts: at the positions it takes in the query's text,
        or (``generating``) at those it takes while an answer is generated. A method at every block is
        one record per block (``layer`` is then not used)."""
        from taskvec.hooks.intervention import Intervention, Interventions

        if self.learned:
            return implicit_icl.vector_interventions(
                vectors, self.generation_positions if generating else self.positions
            )

        def record(at: int) -> Intervention:
            value = self.value(vectors, at, strength).astype(np.float32)
            return Intervention(
                at,
                value,
                site=self.site,
                positions=self.generation_positions if generating else self.positions,
                operation=self.operation,
            )

        if self.every_layer:
            return Interventions(tuple(record(at) for at in range(len(vectors))))
        if self.layers == "up_to":
            return Interventions(tuple(record(at) for at in range(layer + 1)))
        value = self.value(vectors, layer, strength).astype(np.float32)
        return Intervention(
            [layer] * rows,
            np.repeat(value[None], rows, axis=0),
            site=self.site,
            positions=self.generation_positions if generating else self.positions,
            operation=self.operation,
        )

    def where(self, layer: int, strength: float) -> str:
        """How the vector is applied, in words (for the command line's output)."""
        if self.learned:
            return "scale * x + weight * c at every block's attention and MLP output, at every position"
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
        self, vectors: np.ndarray, strength: float, n_queries: int, bare_states: np.ndarray | None = None
    ) -> np.ndarray:
        """For the layer sweep (:func:`taskvec.forward.patched.patched_sweep`, which replaces the last
        position's stream after each block): ``[n_queries, n_layers, hidden]``, the value each query's
        stream takes there under this method. An additive method needs the queries' own streams
        (``bare_states``, :func:`taskvec.forward.capture.last_token_states`, read once for every strength)."""
        if self.layers != "one" or self.site != "block_output" or self.positions != "last":
            raise ValueError(f"{self.name} is not patched at one block's last-token stream: no layer sweep")
        if self.operation == "replace":
            return np.repeat(vectors[None], n_queries, axis=0)
        return bare_states + strength * vectors[None]


@dataclasses.dataclass(frozen=True)
class Choice:
    """A method's configuration chosen on held-out queries: the block (-1 for a method at every
    block) and the strength of best first-token accuracy, and every configuration's accuracy
    (``grid``: per strength, the accuracy after each block, or one accuracy for a method at every block;
    None where that configuration was not tried)."""

    layer: int
    strength: float
    accuracy: float
    grid: dict[float, list[float | None]]  # None: a configuration not tried
    swept_at: float = 1.0  # the strength of the layer sweep

    @property
    def configurations(self) -> int:
        return sum(value is not None for row in self.grid.values() for value in row)

    @property
    def by_layer(self) -> list[float | None]:
        """The layer sweep's accuracies (at :attr:`swept_at`)."""
        return self.grid[self.swept_at]


def choose(
    lm: LoadedModel,
    method: Method,
    vectors: np.ndarray,
    queries: Sequence[str],
    answers: Sequence[Sequence[str]],
    scoring: str,
    strengths: Sequence[float] | None = None,
    batch_size: int = 16,
) -> Choice:
    """Choose ``method``'s block and strength on ``queries`` (bare query texts) by the paper's
    first-token rule against ``answers``. A method at one block: the block of best accuracy in the
    layer sweep at strength 1 (the vector's own scale; the grid's first strength where 1 is not in
    it), then the grid's strengths at that block; so that every method tries about as many
    configurations as there are blocks. A method at every block: one patched pass per strength. A
    method at blocks 0 to L (its patch at the last token only): the queries' tokens but the last run
    once, then the last token once per L on that prefix's cache. Ties:
    the earliest block, then the first strength of the grid (``strengths``, default the method's)."""
    from taskvec.evaluate import choose_layer, token_decoder
    from taskvec.forward.capture import last_token_states
    from taskvec.forward.patched import next_token_variants, patched_next_tokens, patched_sweep
    from taskvec.scoring import first_token_correct

    decode = token_decoder(lm)
    strengths = tuple(strengths or method.strengths)

    def accuracy_of(tokens) -> float:
        return float(np.mean([first_token_correct(decode(t), a, scoring) for t, a in zip(tokens, answers)]))

    grid: dict[float, list[float | None]] = {}
    if method.every_layer:
        for value in strengths:
            record = method.intervention(vectors, -1, value, len(queries))
            grid[value] = [accuracy_of(patched_next_tokens(lm, queries, record, batch_size))]
        best = max(a[0] for a in grid.values())
        return Choice(-1, next(v for v, a in grid.items() if a[0] == best), best, grid)
    if method.layers == "up_to":
        records = [method.intervention(vectors, last, 1.0, len(queries)) for last in range(len(vectors))]
        curve = [accuracy_of(tokens) for tokens in next_token_variants(lm, queries, records, batch_size).tokens]
        layer = choose_layer(curve)
        return Choice(layer, 1.0, curve[layer], {1.0: curve})
    swept_at = 1.0 if 1.0 in strengths else strengths[0]
    bare_states = last_token_states(lm, queries, batch_size) if method.operation == "add" else None
    swept = patched_sweep(
        lm, queries, method.swept_values(vectors, swept_at, len(queries), bare_states), batch_size=batch_size
    )
    curve = [accuracy_of(column) for column in swept.T]
    layer = choose_layer(curve)
    for value in strengths:
        if value == swept_at:
            grid[value] = curve
        else:
            row: list[float | None] = [None] * len(vectors)
            record = method.intervention(vectors, layer, value, len(queries))
            row[layer] = accuracy_of(patched_next_tokens(lm, queries, record, batch_size))
            grid[value] = row
    best = max(a[layer] for a in grid.values())
    return Choice(layer, next(v for v, a in grid.items() if a[layer] == best), best, grid, swept_at)


def _in_context_vector(
    lm: LoadedModel, pool: Sequence[Prompt], fmt: PromptFormat, batch_size: int, shared: dict | None = None
) -> np.ndarray:
    return in_context_vector(lm, pool_pairs(pool), batch_size)


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
        Method(
            "in_context_vector",
            "the in-context vector (Liu et al. 2024), its strength times each block's unit direction turning the "
            "MLP output of every block at every position, with the authors' norm-preserving rule",
            operation="rotate",
            generation_positions="all",
            # the authors' code runs 0.8 by default, their README 0.1
            strengths=(0.05, 0.1, 0.2, 0.4, 0.8),
            extract=_in_context_vector,
            site="mlp_output",
            positions="all",
            layers="every",
        ),
        Method(
            "function_vector",
            "the function vector (Todd et al. 2024): the top heads' mean outputs, ranked by their indirect effect on "
            "shuffled-label prompts, summed, scaled and added after one block at the query's last token and every "
            "generated one",
            operation="add",
            generation_positions="generated",
            strengths=(0.5, 1.0, 2.0, 4.0),
            extract=_function_vector("exact"),
        ),
        Method(
            "function_vector_attribution",
            "the function vector with its heads ranked by attribution patching (one forward and one backward pass "
            "per prompt instead of one pass per head)",
            operation="add",
            generation_positions="generated",
            strengths=(0.5, 1.0, 2.0, 4.0),
            extract=_function_vector("attribution"),
        ),
        Method(
            "state_vector",
            "the state vector (Li et al. 2024), inner optimisation: the attention heads' outputs at the "
            "demonstrations' separators and the query's last token, averaged, replacing the bare query's last-token "
            "heads' outputs in blocks 0 to L",
            operation="replace",
            generation_positions="last",
            strengths=(1.0,),
            extract=_state_vector(momentum=False),
            site="attention_heads",
            layers="up_to",
        ),
        Method(
            "state_vector_momentum",
            "the state vector with its authors' momentum optimisation: plus the weighted mean of the differences "
            "between consecutive demonstrations' states",
            operation="replace",
            generation_positions="last",
            strengths=(1.0,),
            extract=_state_vector(momentum=True),
            site="attention_heads",
            layers="up_to",
        ),
        Method(
            "implicit_icl",
            "implicit in-context learning (Li et al. 2025): the demonstrations' context vectors at every block's "
            "attention and MLP outputs, injected at every position with two coefficients per sub-layer and block "
            "trained by noisy self-calibration on the pool's pairs",
            operation="add",
            generation_positions="all",
            strengths=(1.0,),
            extract=implicit_icl.from_pool,
            site="attention_output",
            positions="all",
            layers="every",
            learned=True,
        ),
    )
}

# what a method chose on the real pool that its shuffled-label control keeps (a function vector's
# heads, implicit ICL's trained coefficients)
KEPT_BY_CONTROL = ("heads", "coefficients")


def get(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}", f"choose one of {', '.join(METHODS)}") from None
