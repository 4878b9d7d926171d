"""Starting the forward pass at a block with a given state: the shortcut that lets a patched pass
skip the blocks below its patch (the patch itself is an :class:`~taskvec.hooks.intervention.Intervention`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def _passthrough(hidden_states, *args, **kwargs):
    """Stands in for a decoder block's computation whose output is not needed: returns its input."""
    return hidden_states


@contextlib.contextmanager
def start_at_layer(
    layers: torch.nn.ModuleList, final_norm: torch.nn.Module, start: int, vectors: torch.Tensor
) -> Iterator[None]:
    """Run only blocks ``start`` onwards, feeding ``vectors`` (``[batch, hidden]``) into block ``start``
    at the last position, as if the blocks below had produced it.

    Patching block ``l``'s output at the last token leaves every earlier position, and everything
    below block ``l + 1`` at the last token, unchanged; so with the prefix's KV cache, the patched
    prediction only needs blocks ``l + 1`` onwards on one token: ``start_at_layer(..., l + 1, theta_l)``.

    The blocks below ``start`` stay in place (the model's own loop may read their attributes); only
    their ``forward`` is shadowed, on the instance, by one that returns its input, and restored on exit.
    """
    target = layers[start] if start < len(layers) else final_norm

    def feed(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        hidden = hidden.clone()
        hidden[:, -1, :] = vectors.to(hidden.device, hidden.dtype)
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    skipped = [layers[i] for i in range(start)]
    handle = target.register_forward_pre_hook(feed, with_kwargs=True)
    try:
        for layer in skipped:
            layer.forward = _passthrough
        yield
    finally:
        for layer in skipped:
            layer.__dict__.pop("forward", None)
        handle.remove()
