"""The function vector (Todd et al., ICLR 2024) from a pool of labelled demonstration sets.

The pool's sets are labelled prompts; the heads of largest average indirect effect on those prompts
with shuffled labels (each head's output at the last token set to its mean over the clean prompts:
the rise in the answer's probability), their mean outputs summed in residual-stream space;
``strength`` times it is *added* after one block at the bare query's last token and every generated
token, as the mean difference is. ``function_vector_attribution`` is the same vector with the heads
ranked by attribution patching's first-order estimate of the same effect (one class, two
registrations). Their authors add the vector at strength 1 after a block chosen on held-out data with
a fixed head count; here the strength is chosen with the block, as for the mean difference, and the
head count is the paper's 10 of GPT-J's 448 heads scaled to the model. The shuffled-label control
keeps the heads chosen on the real pool: it asks what those heads carry without the mapping."""

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


@dataclasses.dataclass(frozen=True)
class HeadVectors(Vectors):
    """A function vector (the same row for every block) and the heads it sums, (layer, head) largest
    effect first, with every head's average indirect effect (``[n_layers, n_heads]``) where they were
    ranked here (None where they were kept from the real pool)."""

    heads: tuple[tuple[int, int], ...] = ()
    ranking: str = "exact"
    average_indirect_effect: np.ndarray | None = None
    prompts: int = 0

    def file_metadata(self) -> dict:
        return {"heads": [list(h) for h in self.heads]}

    def comparison_metadata(self) -> dict:
        return {"heads": [list(h) for h in self.heads]}


def function_vector_from_pool(
    lm: LoadedModel,
    pool: Sequence[Prompt],
    fmt: PromptFormat,
    ranking: str = "exact",
    batch_size: int = 16,
    heads: Sequence[tuple[int, int]] | None = None,
    n_heads: int | None = None,
    seed: int = 0,
) -> HeadVectors:
    """The function vector from a pool of labelled demonstration sets (each set's demonstrations and
    its query): every head's mean output at the last token of the pool's prompts; each head's average
    indirect effect on the same prompts with shuffled labels, by patching every head
    (``ranking="exact"``, :func:`taskvec.methods.heads.head_patch_scan`) or estimated by attribution
    patching (``"attribution"``, one forward and one backward pass per prompt,
    :func:`taskvec.methods.heads.head_attribution`); the sum of the ``n_heads`` heads of largest effect
    (default: the paper's 10 of GPT-J's 448 heads, scaled to the model) in residual-stream space, the
    same row for every block (one is chosen). Given ``heads`` (as the shuffled-label control gets the
    method's own), those heads are summed and no ranking is made."""
    from taskvec.answers import answer_token
    from taskvec.methods.heads import (
        default_head_count,
        function_vector,
        head_attribution,
        head_patch_scan,
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
    if heads is not None:
        vector = function_vector(lm, means, heads)
        return HeadVectors(np.repeat(vector[None], n_layers, axis=0), tuple(map(tuple, heads)), ranking)
    shuffled = shuffle_labels(labelled, seed)
    texts = [fmt.render(p.demonstrations, p.query) for p in shuffled]
    targets = [answer_token(lm, text, p.answers[0]) for text, p in zip(texts, shuffled)]
    scan = head_patch_scan if ranking == "exact" else head_attribution
    clean, patched = scan(lm, texts, targets, means, batch_size)
    effects = (patched - clean[:, None, None]).mean(axis=0)
    chosen = top_heads(effects, n_heads or default_head_count(lm))
    vector = function_vector(lm, means, chosen)
    return HeadVectors(np.repeat(vector[None], n_layers, axis=0), tuple(chosen), ranking, effects, len(texts))


@dataclasses.dataclass(frozen=True)
class FunctionVector(Method):
    ranking: str = "exact"

    def make(self, lm, pool, fmt, batch_size, settings, keep) -> Vectors:
        kept = keep.heads if isinstance(keep, HeadVectors) else None
        return function_vector_from_pool(lm, pool, fmt, self.ranking, batch_size, heads=kept)

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
