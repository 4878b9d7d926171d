"""The in-context vector (Liu et al., ICML 2024), as its authors' code computes it: from the pool's
labelled pairs, one direction per block; ``strength`` times each block's unit direction turns the
MLP's output of *every* block at *every* position, prompt and generated tokens alike, by its authors'
norm-preserving rule (the intervention record's ``rotate`` operation). There is no layer to choose:
the strength is chosen on held-out pairs. Its site is the MLP's contribution to the residual stream:
on Gemma 2 and 3 that is the MLP's output after its post-feed-forward norm (where the authors' code,
written for models without that norm, would hook the MLP before it, and the norm would rescale the
result)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from taskvec.errors import ConfigError
from taskvec.methods.base import Method, Vectors

if TYPE_CHECKING:
    from taskvec.models import LoadedModel


def in_context_vector(lm: LoadedModel, pairs: Sequence[tuple[str, str]], batch_size: int = 16) -> np.ndarray:
    """The in-context vector of Liu et al. (ICML 2024), as its authors' code computes it:
    ``[n_layers, hidden]`` float32.

    Each pair's input and output run alone (whitespace stripped; no template, the tokenizer's own
    special tokens); at the last token, the embedding layer's output and the residual stream after
    every block are concatenated, and the output's minus the input's is one row per pair. The vector
    is the rows' mean plus their first principal direction (centred SVD, sign by scikit-learn's rule:
    the largest entry of the first left singular vector positive; unit norm over all layers
    together), with the embedding layer's part dropped: one vector per block. The authors also strip
    punctuation from each side; this does not (an algorithmic task's input is its punctuation)."""
    from taskvec.forward.capture import last_token_states

    if len(pairs) < 2:
        raise ConfigError(f"an in-context vector needs at least 2 pairs, got {len(pairs)}")
    texts = [x.strip() for x, _ in pairs] + [y.strip() for _, y in pairs]
    states = last_token_states(lm, texts, batch_size)  # [2k, layers, hidden]
    embedding = _last_token_embeddings(lm, texts)  # [2k, hidden]
    full = np.concatenate([embedding[:, None], states], axis=1)
    k = len(pairs)
    rows = (full[k:] - full[:k]).reshape(k, -1)
    mean = rows.mean(axis=0)
    left, _, right = np.linalg.svd(rows - mean, full_matrices=False)
    sign = np.sign(left[np.argmax(np.abs(left[:, 0])), 0]) or 1.0
    direction = (right[0] * sign + mean).reshape(full.shape[1:])
    return direction[1:].astype(np.float32)


def _last_token_embeddings(lm: LoadedModel, texts: Sequence[str]) -> np.ndarray:
    """The input embedding module's output for each text's last token (before any scaling the
    model's forward applies to it, as a hook on the module sees it)."""
    import torch

    ids = [lm.tokenizer.encode(text)[-1] for text in texts]  # as encode() tokenizes them for the pass
    with torch.inference_mode():
        rows = lm.model.get_input_embeddings()(torch.tensor(ids, device=lm.device))
    return rows.float().cpu().numpy()


@dataclasses.dataclass(frozen=True)
class InContextVector(Method):
    def make(self, lm, pool, fmt, batch_size, settings, keep) -> Vectors:
        from taskvec.methods.pool import pool_pairs

        return Vectors(in_context_vector(lm, pool_pairs(pool), batch_size))


METHODS = (
    InContextVector(
        "in_context_vector",
        label="in-context vector",
        summary="the in-context vector (Liu et al. 2024), its strength times each block's unit direction turning the "
        "MLP output of every block at every position, with the authors' norm-preserving rule",
        operation="rotate",
        generation_positions="all",
        # the authors' code runs 0.8 by default, their README 0.1; 0 (the bare query) and the steps below
        # 0.05 let the dev choice say that no strength helps, or find the smaller operating point a small
        # model needs (0.05 won 18 of 22 tasks and models with the authors' range alone)
        strengths=(0.0, 0.0125, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8),
        site="mlp_output",
        positions="all",
        layers="every",
        order=30,
    ),
)
