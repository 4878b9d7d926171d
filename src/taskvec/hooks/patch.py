"""Writing the residual stream: replacing a block's output at the last position, and starting the
forward pass at a block with a given state."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from taskvec.hooks import block_hidden, to_device


@contextlib.contextmanager
def replace_last_token(
    layers: Sequence[torch.nn.Module], layer_of_row: torch.Tensor, vectors: torch.Tensor
) -> Iterator[None]:
    """Replace the output of block ``layer_of_row[b]`` at the last position with ``vectors[b]``.

    One pass can patch a different layer in every row of the batch (the layer sweep); a row whose
    layer is -1 is left untouched. ``vectors`` is ``[batch, hidden]``.
    """
    if layer_of_row.shape[0] != vectors.shape[0]:
        raise ValueError("layer_of_row and vectors must have one entry per batch row")

    layer_of_row = layer_of_row.cpu()

    def make_hook(index: int):
        # Each block's rows and vectors are picked out once, before the pass; the hook only writes them
        # into the block's output, so the pass waits on no host-device copy.
        rows = to_device(torch.nonzero(layer_of_row == index).flatten(), vectors.device)
        patch = vectors[rows]

        def hook(module, args, output):
            hidden = block_hidden(output)
            hidden[rows.to(hidden.device), -1, :] = patch.to(hidden.device, hidden.dtype)
            return output

        return hook

    present = set(layer_of_row.tolist())
    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers) if i in present]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


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
