"""The function vector (Todd et al., ICLR 2024) from a pool of labelled demonstration sets.

The pool's sets are labelled prompts; the heads of largest average indirect effect on those prompts
with shuffled labels (each head's output at the last token set to its mean over the clean prompts:
the rise in the answer's probability), their mean outputs summed in residual-stream space;
``strength`` times it is *added* after one block at the bare query's last token and every generated
token, as the mean difference is. ``function_vector_attribution`` is the same vector with the heads
ranked by attribution patching's first-order estimate of the same effect (one class, two
registrations). Their authors add the vector at strength 1 after a block chosen on held-out data with
a fixed head count; here the strength is chosen with the block, as for the mean difference, and so is
the head count: the layer sweep runs with the paper's 10 of GPT-J's 448 heads scaled to the model,
then at the chosen block every strength with half, that many and twice as many heads
(:data:`HEAD_COUNTS`), so that its tuning budget stays near the other additive methods'. The label
controls keep the heads ranked on the real pool: they ask what those heads carry without the mapping."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from taskvec.errors import ConfigError
from taskvec.methods.base import Method, Vectors

if TYPE_CHECKING:
    from taskvec.models import LoadedModel
    from taskvec.prompts import Prompt, PromptFormat

HEAD_RANKINGS = ("exact", "attribution")
HEAD_COUNTS = (0.5, 1.0, 2.0)  # the head counts tried at the chosen block, as multiples of the default


@dataclasses.dataclass(frozen=True)
class HeadVectors(Vectors):
    """A function vector (the same row for every block) and the heads it sums, (layer, head) largest
    effect first, with every head's average indirect effect (``[n_layers, n_heads]``) where they were
    ranked here (None where they were kept from the real pool)."""

    heads: tuple[tuple[int, int], ...] = ()
    ranking: str = "exact"
    average_indirect_effect: np.ndarray | None = None
    prompts: int = 0
    # every head's mean output in residual-stream space ([n_layers, n_heads, hidden]) and every head by
    # effect, largest first: what a vector of another head count is made from (none in a file)
    shares: np.ndarray | None = None
    ranked: tuple[tuple[int, int], ...] = ()

    def with_heads(self, n: int) -> HeadVectors:
        """The function vector of the ``n`` heads of largest effect (the same pool's mean outputs)."""
        if self.shares is None or not self.ranked:
            raise ConfigError("this function vector keeps no head outputs: it has one head count, its own")
        heads = self.ranked[:n]
        vector = _summed(self.shares, heads)
        return dataclasses.replace(self, values=np.repeat(vector[None], len(self.values), axis=0), heads=heads)

    def file_metadata(self) -> dict:
        return {"heads": [list(h) for h in self.heads]}

    def comparison_metadata(self) -> dict:
        return {"heads": [list(h) for h in self.heads]}


def _summed(shares: np.ndarray, heads) -> np.ndarray:
    """The heads' shares summed: the function vector (``[hidden]``)."""
    if not heads:
        return np.zeros(shares.shape[-1], dtype=np.float32)
    return np.sum([shares[layer, head] for layer, head in heads], axis=0).astype(np.float32)


def function_vector_from_pool(
    lm: LoadedModel,
    pool: Sequence[Prompt],
    fmt: PromptFormat,
    ranking: str = "exact",
    batch_size: int = 16,
    heads: Sequence[tuple[int, int]] | None = None,
    n_heads: int | None = None,
    seed: int = 0,
    ranked: Sequence[tuple[int, int]] = (),
) -> HeadVectors:
    """The function vector from a pool of labelled demonstration sets (each set's demonstrations and
    its query): every head's mean output at the last token of the pool's prompts; each head's average
    indirect effect on the same prompts with shuffled labels, by patching every head
    (``ranking="exact"``, :func:`taskvec.methods.heads.head_patch_scan`) or estimated by attribution
    patching (``"attribution"``, one forward and one backward pass per prompt,
    :func:`taskvec.methods.heads.head_attribution`); the sum of the ``n_heads`` heads of largest effect
    (default: the paper's 10 of GPT-J's 448 heads, scaled to the model) in residual-stream space, the
    same row for every block (one is chosen). Given ``heads`` (as the label controls get the
    method's own, with its ``ranked`` heads), those heads are summed and no ranking is made."""
    from taskvec.answers import answer_token
    from taskvec.methods.heads import (
        default_head_count,
        head_attribution,
        head_patch_scan,
        head_vectors,
        mean_head_outputs,
        top_heads,
    )
    from taskvec.methods.pool import shuffle_labels

    if ranking not in HEAD_RANKINGS:
        raise ValueError(f"ranking must be one of {HEAD_RANKINGS}, not {ranking!r}")
    labelled = [p for p in pool if p.query and p.answers]
    if not labelled:
        raise ConfigError("a function vector needs demonstration sets with a labelled query; the pool has none")
    means = mean_head_outputs(lm, [fmt.render(p.demonstrations, p.query) for p in labelled], batch_size)
    n_layers = means.shape[0]
    shares = head_vectors(lm, means)
    if heads is not None:
        vector = _summed(shares, heads)
        ranked = tuple(map(tuple, ranked or heads))
        return HeadVectors(
            np.repeat(vector[None], n_layers, axis=0), tuple(map(tuple, heads)), ranking, shares=shares, ranked=ranked
        )
    shuffled = shuffle_labels(labelled, seed)
    texts = [fmt.render(p.demonstrations, p.query) for p in shuffled]
    targets = [answer_token(lm, text, p.answers[0]) for text, p in zip(texts, shuffled)]
    scan = head_patch_scan if ranking == "exact" else head_attribution
    clean, patched = scan(lm, texts, targets, means, batch_size)
    effects = (patched - clean[:, None, None]).mean(axis=0)
    order = tuple(top_heads(effects, effects.size))
    chosen = order[: n_heads or default_head_count(lm)]
    vector = _summed(shares, chosen)
    return HeadVectors(
        np.repeat(vector[None], n_layers, axis=0), chosen, ranking, effects, len(texts), shares=shares, ranked=order
    )


@dataclasses.dataclass(frozen=True)
class FunctionVector(Method):
    ranking: str = "exact"

    def make(self, lm, pool, fmt, batch_size, settings, keep) -> Vectors:
        if isinstance(keep, HeadVectors):
            return function_vector_from_pool(lm, pool, fmt, self.ranking, batch_size, keep.heads, ranked=keep.ranked)
        return function_vector_from_pool(lm, pool, fmt, self.ranking, batch_size)

    def choose(self, lm, vectors, queries, answers, scoring, strengths=None, batch_size=16):
        """The block and strength of the layer sweep at the vector's own head count
        (:func:`taskvec.methods.search.choose`), then at that block every strength with each other
        count of :data:`HEAD_COUNTS` (the ``n_heads`` chosen, ``extra_grid`` what each count reached);
        ties keep the vector's own count."""
        from taskvec.forward.patched import patched_next_tokens
        from taskvec.methods.search import choose, scorer

        base = choose(lm, self, vectors, queries, answers, scoring, strengths, batch_size)
        own = len(vectors.heads)
        if not isinstance(vectors, HeadVectors) or vectors.shares is None or not own:
            return base
        total = len(vectors.ranked)
        counts = sorted({min(total, max(1, round(own * f))) for f in HEAD_COUNTS} - {own})
        accuracy_of = scorer(lm, answers, scoring)
        best = (base.accuracy, own, base.strength)
        tried: dict[str, dict[str, float]] = {str(own): {str(s): row[base.layer] for s, row in base.grid.items()}}
        for count in counts:
            fewer_or_more = vectors.with_heads(count)
            tried[str(count)] = {}
            for strength in base.grid:
                patch = self.intervention(fewer_or_more, base.layer, strength, len(queries))
                tokens = patched_next_tokens(lm, queries, patch, batch_size)
                accuracy = accuracy_of(tokens)
                tried[str(count)][str(strength)] = accuracy
                if accuracy > best[0]:
                    best = (accuracy, count, strength)
        accuracy, count, strength = best
        return dataclasses.replace(
            base,
            strength=strength,
            accuracy=accuracy,
            extra={"n_heads": count},
            extra_configurations=len(counts) * len(base.grid),
            extra_grid=tried,
        )

    def intervention(self, vectors, layer, strength, rows, generating=False, n_heads=None, **extra):
        if (
            isinstance(vectors, HeadVectors)
            and vectors.shares is not None
            and n_heads not in (None, len(vectors.heads))
        ):
            vectors = vectors.with_heads(n_heads)
        return super().intervention(vectors, layer, strength, rows, generating, **extra)

    def random_like(self, vectors, seed):
        """A random direction at the vector's norm; it keeps no head outputs (nothing rebuilds it)."""
        return dataclasses.replace(super().random_like(vectors, seed), shares=None, ranked=())

    def settle(self, vectors, choice):
        count = choice.extra.get("n_heads")
        if count is None or not isinstance(vectors, HeadVectors) or vectors.shares is None:
            return vectors, {}
        return (vectors if count == len(vectors.heads) else vectors.with_heads(count)), {}

    def from_rows(self, rows: np.ndarray, metadata: dict) -> Vectors:
        heads = tuple(tuple(h) for h in metadata.get("heads", ()))
        return HeadVectors(rows, heads, self.ranking)


METHODS = (
    FunctionVector(
        "function_vector",
        label="function vector",
        summary="the function vector (Todd et al. 2024): the top heads' mean outputs, ranked by their indirect effect "
        "on shuffled-label prompts, summed, scaled and added after one block at the query's last token and every "
        "generated one",
        operation="add",
        generation_positions="generated",
        strengths=(0.5, 1.0, 2.0, 4.0),
        order=40,
    ),
    FunctionVector(
        "function_vector_attribution",
        label="function vector, attribution-patching heads",
        summary="the function vector with its heads ranked by attribution patching (one forward and one backward "
        "pass per prompt instead of one pass per head)",
        operation="add",
        generation_positions="generated",
        strengths=(0.5, 1.0, 2.0, 4.0),
        order=50,
        estimates="function_vector",
        ranking="attribution",
    ),
)
