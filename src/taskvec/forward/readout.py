"""Next-token prediction: the argmax after each text, and the rest of the forward pass from the last
block's output (final norm, unembedding)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from taskvec.architectures import describe
from taskvec.forward.batching import HostCopies, batches, encode, progress_bar
from taskvec.hooks import to_device
from taskvec.models import LoadedModel


@torch.inference_mode()
def next_tokens(
    lm: LoadedModel,
    texts: Sequence[str],
    batch_size: int = 16,
    progress: bool = False,
    log_probs: np.ndarray | None = None,
) -> np.ndarray:
    """Argmax next token after each text: ``[n_texts]`` token ids. Where ``log_probs`` (``[n_texts,
    vocab]`` float32) is given, each text's next-token log-distribution is written into it."""
    result = np.zeros(len(texts), dtype=np.int64)
    copies = HostCopies(result)
    with progress_bar(len(texts), "predict", progress) as bar:
        for rows in batches(texts, batch_size):
            batch = encode(lm, [texts[i] for i in rows])
            logits = lm.model(**batch.inputs(), use_cache=False, logits_to_keep=1).logits[:, -1, :]
            copies.add(rows, logits.argmax(dim=-1))
            if log_probs is not None:
                log_probs[rows] = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
            bar.update(len(rows))
    copies.flush()
    return result


@torch.inference_mode()
def read_out(lm: LoadedModel, last_block_states: np.ndarray) -> torch.Tensor:
    """Next-token logits ``[n, vocab]`` from the last block's output at the last position: the final
    norm, the unembedding and any final soft-capping, the rest of the forward pass."""
    arch = describe(lm.model)
    dtype = next(arch.unembedding.parameters()).dtype
    states = torch.from_numpy(np.ascontiguousarray(last_block_states, dtype=np.float32))
    return arch.logits(to_device(states, lm.device).to(dtype)[:, None, :])[:, -1, :]


@torch.inference_mode()
def next_tokens_from_states(lm: LoadedModel, last_block_states: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Argmax next token given the last block's output at the last position: ``[n]`` token ids.

    This equals :func:`next_tokens` on the texts whose states these are.
    """
    result = np.zeros(len(last_block_states), dtype=np.int64)
    copies = HostCopies(result)
    for start in range(0, len(last_block_states), batch_size):
        rows = slice(start, start + batch_size)
        copies.add(rows, read_out(lm, last_block_states[rows]).argmax(dim=-1))
    copies.flush()
    return result
