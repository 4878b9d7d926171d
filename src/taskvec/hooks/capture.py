"""Reading activations: each block's output at the last position, the stream entering each block,
and the attention heads' outputs (the input of each block's attention output projection), read as they
are or as a variable to differentiate by (attribution patching)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from taskvec.hooks import block_hidden
from taskvec.hooks.intervention import projection_input


@contextlib.contextmanager
def _per_module(modules: Sequence[torch.nn.Module], make_hook, pre: bool) -> Iterator[list]:
    """One hook per module (``make_hook(index, values)``; a pre-hook with keyword arguments where
    ``pre``), filling ``values[index]``; every hook removed on leaving."""
    values: list = [None] * len(modules)
    handles = [
        m.register_forward_pre_hook(make_hook(i, values), with_kwargs=True)
        if pre
        else m.register_forward_hook(make_hook(i, values))
        for i, m in enumerate(modules)
    ]
    try:
        yield values
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def capture_last_token(layers: Sequence[torch.nn.Module]) -> Iterator[list[torch.Tensor | None]]:
    """Record each block's output at the last position: ``states[l]`` is ``[batch, hidden]``.

    Only the last position is kept (a copy), so memory does not grow with the prompt length.
    """

    def make_hook(index: int, states: list):
        def hook(module, args, output):
            states[index] = block_hidden(output)[:, -1, :].detach().clone()

        return hook

    with _per_module(layers, make_hook, pre=False) as states:
        yield states


@contextlib.contextmanager
def capture_head_outputs(heads, every_position: bool = False) -> Iterator[list[torch.Tensor | None]]:
    """Record every head's output (``heads``: :class:`taskvec.methods.heads.Heads`, the attention output
    projections and how their input splits) at the last position: ``outputs[l]`` is ``[batch, n_heads, head_dim]``;
    or (``every_position``) at every position, the heads side by side: ``[batch, positions, n_heads *
    head_dim]``."""

    def make_hook(index: int, outputs: list):
        def hook(module, args, kwargs):
            z = projection_input(args, kwargs)[0]
            if every_position:
                outputs[index] = z.detach().clone()
                return
            z = z[:, -1, :]
            outputs[index] = z.detach().reshape(z.shape[0], heads.n_heads, heads.head_dim).clone()

        return hook

    with _per_module(heads.projections, make_hook, pre=True) as outputs:
        yield outputs


@contextlib.contextmanager
def capture_block_inputs(layers: Sequence[torch.nn.Module]) -> Iterator[list[torch.Tensor | None]]:
    """Record the residual stream entering each block at the last position: ``[batch, hidden]``."""

    def make_hook(index: int, inputs: list):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            inputs[index] = hidden[:, -1, :].detach().clone()

        return hook

    with _per_module(layers, make_hook, pre=True) as inputs:
        yield inputs


@contextlib.contextmanager
def head_output_variables(
    projections: Sequence[torch.nn.Module], variables: Sequence[torch.Tensor]
) -> Iterator[list[torch.Tensor | None]]:
    """Make every head's output at the last position a variable: ``variables[l]`` (``[batch, n_heads *
    head_dim]``, zeros that require a gradient) is added to the input of block ``l``'s attention output
    projection there, so that the gradient with respect to it is the one with respect to the heads'
    outputs (every later path kept); ``seen[l]`` records that input as it was (detached)."""

    def make_hook(index: int, seen: list):
        def hook(module, args, kwargs):
            z, name = projection_input(args, kwargs)
            seen[index] = z[:, -1, :].detach()
            z = torch.cat([z[:, :-1], (z[:, -1] + variables[index])[:, None]], dim=1)
            return ((z, *args[1:]), kwargs) if name is None else (args, {**kwargs, name: z})

        return hook

    with _per_module(projections, make_hook, pre=True) as seen:
        yield seen
