"""Interventions on the residual stream, each a context manager whose hooks are removed on exit,
even on error: :mod:`~taskvec.hooks.capture` reads the stream, :mod:`~taskvec.hooks.patch` writes it.

A decoder block's output is the residual stream after that block; in transformers it is either a
tensor or a tuple whose first element is that tensor. Both are handled here and nowhere else.
"""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` on ``device`` without making the host wait: a copy from ordinary (pageable) host memory
    to a GPU blocks until the GPU's queue has run, so host tensors go through pinned memory,
    asynchronously (the pinned block is not reused before the copy is done)."""
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def block_hidden(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output
