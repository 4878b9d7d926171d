"""Reading the residual stream: each block's output at the last position."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from taskvec.hooks import block_hidden


@contextlib.contextmanager
def capture_last_token(layers: Sequence[torch.nn.Module]) -> Iterator[list[torch.Tensor | None]]:
    """Record each block's output at the last position: ``states[l]`` is ``[batch, hidden]``.

    Only the last position is kept (a copy), so memory does not grow with the prompt length.
    """
    states: list[torch.Tensor | None] = [None] * len(layers)

    def make_hook(index: int):
        def hook(module, args, output):
            states[index] = block_hidden(output)[:, -1, :].detach().clone()

        return hook

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers)]
    try:
        yield states
    finally:
        for handle in handles:
            handle.remove()
