"""Hand-written, slow versions of what the methods compute: the residual stream at the last token
and greedy decoding with a vector added by one forward hook, for the method tests to compare against."""

from __future__ import annotations

import numpy as np
import torch

from taskvec.architectures import describe
from taskvec.prompts import PromptFormat
from taskvec.tasks.base import Pair

PAIRS = [Pair(c, (c.upper(),)) for c in "abcdefghijklmnopqrstuvwx"]
FMT = PromptFormat()


def residual(output):
    return output[0] if isinstance(output, tuple) else output


@torch.inference_mode()
def states_by_hand(lm, text: str) -> np.ndarray:
    """The residual stream after every block at the text's last token, ``[n_layers, hidden]``."""
    layers = describe(lm.model).layers
    seen = {}
    handles = [
        block.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, residual(out)[0, -1].clone()))
        for i, block in enumerate(layers)
    ]
    try:
        lm.model(torch.tensor([lm.tokenizer(text).input_ids]))
    finally:
        for h in handles:
            h.remove()
    return torch.stack([seen[i] for i in range(len(layers))]).float().numpy()


@torch.inference_mode()
def greedy_by_hand(lm, text: str, layer: int, added: np.ndarray | None, steps: int) -> list[int]:
    """Greedy tokens after ``text``, recomputing the whole sequence at each step, with ``added`` added
    to block ``layer``'s output from the text's last position on (the text's last token and every
    generated one)."""
    ids = list(lm.tokenizer(text).input_ids)
    start = len(ids) - 1
    block = describe(lm.model).layers[layer]

    def hook(module, args, output):
        stream = residual(output)
        stream[0, start:] += torch.as_tensor(added, dtype=stream.dtype)
        return output

    handle = block.register_forward_hook(hook) if added is not None else None
    out = []
    try:
        for _ in range(steps):
            token = int(lm.model(torch.tensor([ids])).logits[0, -1].argmax())
            out.append(token)
            ids.append(token)
    finally:
        if handle is not None:
            handle.remove()
    return out
