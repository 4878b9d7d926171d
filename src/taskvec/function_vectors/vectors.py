"""Function vectors (Todd et al., ICLR 2024) on the study's prompts, and the controls beside them.

- Each head's mean output at the last token of the task's clean ICL prompts (the dev split).
- Each head's indirect effect: on ICL prompts whose demonstrations have shuffled labels, the rise in
  the probability of the query's first answer token when that head's output at the last token is
  replaced by its mean (:func:`taskvec.function_vectors.heads.head_patch_scan`), averaged over prompts; averaged again
  over tasks for the heads that serve many tasks.
- The function vector: the sum of the top heads' mean outputs in residual-stream space, *added* to
  the last token's residual stream after a block (:func:`add_sweep` tries every block).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from taskvec.controls import shuffle_labels
from taskvec.forward.capture import last_token_states
from taskvec.forward.patched import next_token_variants, patched_sweep
from taskvec.function_vectors.heads import attention_heads, head_patch_scan, head_vectors, mean_head_outputs
from taskvec.hooks.intervention import Intervention
from taskvec.models import LoadedModel
from taskvec.prompts import Prompt, PromptFormat


def answer_token(lm: LoadedModel, text: str, answer: str) -> int:
    """The first token of ``answer`` written right after ``text``, as the model tokenizes the two
    together (falls back to the answer alone where the text's tokens change at the join)."""
    before = lm.tokenizer.encode(text)
    joined = lm.tokenizer.encode(text + answer)
    if joined[: len(before)] == before and len(joined) > len(before):
        return int(joined[len(before)])
    return int(lm.tokenizer.encode(answer, add_special_tokens=False)[0])


@dataclasses.dataclass(frozen=True)
class HeadEffects:
    """One task's heads: mean outputs at the last token of clean ICL prompts
    (``[n_layers, n_heads, head_dim]``), and each head's indirect effect per shuffled prompt
    (``[n_prompts, n_layers, n_heads]``), with the unpatched probabilities of the answer
    (``[n_prompts]``)."""

    means: np.ndarray
    clean: np.ndarray
    patched: np.ndarray

    @property
    def indirect_effects(self) -> np.ndarray:
        return self.patched - self.clean[:, None, None]

    @property
    def average_indirect_effect(self) -> np.ndarray:
        """``[n_layers, n_heads]``: the mean rise in the answer's probability."""
        return self.indirect_effects.mean(axis=0)


def head_effects(
    lm: LoadedModel,
    mean_prompts: Sequence[Prompt],
    effect_prompts: Sequence[Prompt],
    fmt: PromptFormat,
    seed: int,
    batch_size: int = 16,
    progress: bool = False,
) -> HeadEffects:
    """Mean head outputs over ``mean_prompts`` (clean ICL prompts) and each head's indirect effect on
    ``effect_prompts`` with shuffled labels."""
    clean_texts = [fmt.render(p.demonstrations, p.query) for p in mean_prompts]  # clean: unshuffled
    means = mean_head_outputs(lm, clean_texts, batch_size)
    shuffled = shuffle_labels(effect_prompts, seed)
    texts = [fmt.render(p.demonstrations, p.query) for p in shuffled]
    targets = [answer_token(lm, text, p.answers[0]) for text, p in zip(texts, shuffled)]
    clean, patched = head_patch_scan(lm, texts, targets, means, batch_size, progress)
    return HeadEffects(means, clean, patched)


def top_heads(average_indirect_effect: np.ndarray, n: int) -> list[tuple[int, int]]:
    """The ``n`` heads (layer, head) of largest average indirect effect, largest first (ties by
    position, so the choice is deterministic)."""
    flat = average_indirect_effect.reshape(-1)
    order = np.lexsort((np.arange(flat.size), -flat))[:n]
    n_heads = average_indirect_effect.shape[1]
    return [(int(i // n_heads), int(i % n_heads)) for i in order]


def function_vector(lm: LoadedModel, means: np.ndarray, heads: Sequence[tuple[int, int]]) -> np.ndarray:
    """The sum of the given heads' mean outputs in residual-stream space: ``[hidden]``."""
    vectors = head_vectors(lm, means)
    if not heads:
        return np.zeros(vectors.shape[-1], dtype=np.float32)
    return np.sum([vectors[layer, head] for layer, head in heads], axis=0).astype(np.float32)


def default_head_count(lm: LoadedModel, per_thousand: float = 10 / 448 * 1000) -> int:
    """The paper's 10 heads for GPT-J (28 layers x 16 heads = 448), scaled to the model's head count."""
    heads = attention_heads(lm)
    return max(1, round(heads.n_layers * heads.n_heads * per_thousand / 1000))


def add_sweep(
    lm: LoadedModel,
    texts: Sequence[str],
    vector: np.ndarray,
    layers: Sequence[int] | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> np.ndarray:
    """Next-token prediction after each text with ``vector`` added to the residual stream after block
    ``l`` at the last token, for each ``l`` in ``layers``: ``[n_texts, len(layers)]`` token ids.

    Adding is replacing the block's output by itself plus the vector: the clean last-token states
    come from one pass, then the layer sweep patches them in (:func:`taskvec.forward.patched_sweep`)."""
    states = last_token_states(lm, texts, batch_size, progress)
    return patched_sweep(lm, texts, states + vector[None, None, :], layers, batch_size, progress)


def plain_and_added_next_tokens(
    lm: LoadedModel, texts: Sequence[str], layer: int, vectors: Sequence[np.ndarray], batch_size: int = 16
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Next-token prediction after each text, unpatched (``[n_texts]`` token ids) and with each of
    ``vectors`` (``[hidden]``) added after block ``layer`` at the last token (one array per vector)."""
    added = [Intervention(layer, v, operation="add") for v in vectors]
    variants = next_token_variants(lm, texts, added, batch_size)
    return variants.plain, variants.tokens
