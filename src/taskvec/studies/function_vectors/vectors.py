"""Function vectors (Todd et al., ICLR 2024) on the study's prompts, and the controls beside them.

- Each head's mean output at the last token of the task's clean ICL prompts (the dev split).
- Each head's indirect effect: on ICL prompts whose demonstrations have shuffled labels, the rise in
  the probability of the query's first answer token when that head's output at the last token is
  replaced by its mean (:func:`taskvec.methods.heads.head_patch_scan`), averaged over prompts; averaged again
  over tasks for the heads that serve many tasks.
- The function vector: the sum of the top heads' mean outputs in residual-stream space, *added* to
  the last token's residual stream after a block (:func:`add_sweep` tries every block).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from taskvec.answers import answer_token
from taskvec.forward.capture import last_token_states
from taskvec.forward.patched import next_token_variants, patched_sweep
from taskvec.hooks.intervention import Intervention
from taskvec.methods.heads import head_patch_scan, mean_head_outputs
from taskvec.methods.pool import shuffle_labels
from taskvec.models import LoadedModel
from taskvec.prompts import Prompt, PromptFormat


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
