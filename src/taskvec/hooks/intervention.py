"""One record for every intervention on a model's activations, and the one context that applies it.

An :class:`Intervention` says, as data, what changes: at which **site** of a block (its output, the
residual stream after it; what its attention or its MLP adds to the stream; one attention head's
slice, or every head's: the attention output projection's input), in which **layer** (one per batch
row, so that one pass can patch a different layer in each row: the layer sweep), at which token
**positions** (the text's last; every position, generated tokens included; the text's last and each
generated token), by which **operation** (replace the value, add to it, optionally after scaling
it, or turn it), with which **vectors** (one for every row, or one per row).
:class:`Interventions` applies several records in one pass (a vector at every layer, as in-context
vectors and state vectors write them, or at two sites of a block).
:func:`intervene` registers its hooks for the duration of a ``with`` block (removed on exit, even on
error) and counts, per layer, the passes it changed: a hook that never fires is visible, not silent.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from taskvec.architectures import INPUT_SITES, SITES, Architecture
from taskvec.hooks import block_hidden, to_device

POSITIONS = ("last", "all", "generated")
OPERATIONS = ("replace", "add", "rotate", "linear")


def _as_long(values, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    if tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must be integers, not {tensor.dtype}")
    return tensor.to(torch.long).cpu()


@dataclasses.dataclass(frozen=True)
class Intervention:
    """A change to one site's activations, row by row.

    ``layers``: the layer of each batch row (``[rows]``; -1 leaves the row alone), or one layer for
    every row. ``vectors``: ``[rows, width]``, or ``[width]`` for every row; the width is the hidden
    size, or the head dimension at the ``head`` site. ``heads``: at the ``head`` site, the head of each
    row (or one head for every row). ``positions``: ``last`` (the last position of the text),
    ``all`` (every position, and in generation each generated token as it is fed back), or
    ``generated`` (the last position of the text and each generated token). ``operation``: ``replace``,
    ``add``, or ``rotate`` (the in-context-vector rule, Liu et al. 2024: the value turns toward the
    vector's direction and keeps its own norm, ``normalize(normalize(x) + (1 + max(0, cos(x, -v))) v) * |x|``,
    where ``v`` is the vector given, its strength times a unit direction). ``scale`` (``add`` only): the
    value is multiplied by it before the vector is added, ``scale * x + v`` (implicit in-context
    learning's learned coefficient); a tensor that requires a gradient keeps its graph, as the vectors do.
    ``linear``: the value is mapped by ``matrix`` (``[width, width]``, the same for every row) and the
    vector added, ``matrix @ x + v`` (conceptor steering's soft projection, with ``v`` zero).
    """

    layers: int | Sequence[int] | np.ndarray | torch.Tensor
    vectors: np.ndarray | torch.Tensor
    site: str = "block_output"
    positions: str = "last"
    operation: str = "replace"
    heads: int | Sequence[int] | np.ndarray | torch.Tensor | None = None
    scale: float | torch.Tensor | None = None
    matrix: np.ndarray | torch.Tensor | None = None

    def __post_init__(self) -> None:
        for value, allowed, name in (
            (self.site, SITES, "site"),
            (self.positions, POSITIONS, "positions"),
            (self.operation, OPERATIONS, "operation"),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
        if (self.site == "head") != (self.heads is not None):
            raise ValueError("heads is given exactly when the site is 'head'")
        if self.scale is not None and self.operation != "add":
            raise ValueError(f"a scale goes with the add operation, not {self.operation!r}")
        if (self.operation == "linear") != (self.matrix is not None):
            raise ValueError("a matrix is given exactly when the operation is 'linear'")
        if isinstance(self.matrix, np.ndarray):
            object.__setattr__(self, "matrix", torch.from_numpy(np.ascontiguousarray(self.matrix, dtype=np.float32)))
        vectors = self.vectors
        if isinstance(vectors, np.ndarray):
            vectors = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
        if vectors.ndim not in (1, 2):
            raise ValueError(f"vectors must be [width] or [rows, width], not {tuple(vectors.shape)}")
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "layers", _as_long(self.layers, "layers"))
        if self.heads is not None:
            object.__setattr__(self, "heads", _as_long(self.heads, "heads"))
        given = (self.layers, self.heads, vectors if vectors.ndim == 2 else None)
        rows = {len(t) for t in given if t is not None and t.ndim}
        if len(rows) > 1:
            raise ValueError(f"layers, heads and vectors give different numbers of rows: {sorted(rows)}")

    @property
    def n_rows(self) -> int | None:
        """The number of rows it is given per row, or None where everything is one for every row."""
        for tensor in (self.layers, self.heads, self.vectors if self.vectors.ndim == 2 else None):
            if tensor is not None and tensor.ndim:
                return len(tensor)
        return None

    @property
    def per_row(self) -> bool:
        return self.n_rows is not None

    def select(self, rows: Sequence[int] | np.ndarray | torch.Tensor) -> Intervention:
        """The same intervention on a batch made of these rows (of the texts it was given for)."""
        if not self.per_row:
            return self
        index = _as_long(rows, "rows")

        def pick(tensor):
            return tensor[index] if tensor is not None and tensor.ndim else tensor

        vectors = self.vectors[index.to(self.vectors.device)] if self.vectors.ndim == 2 else self.vectors
        return dataclasses.replace(self, layers=pick(self.layers), vectors=vectors, heads=pick(self.heads))

    def to(self, device: torch.device | str) -> Intervention:
        """The same intervention with its vectors (and a tensor scale) on ``device``."""
        scale = to_device(self.scale, device) if isinstance(self.scale, torch.Tensor) else self.scale
        matrix = None if self.matrix is None else to_device(self.matrix, device)
        return dataclasses.replace(self, vectors=to_device(self.vectors, device), scale=scale, matrix=matrix)

    @property
    def whole_text(self) -> bool:
        """Whether it changes positions before the text's last (so that a pass over the last token
        alone, on the prefix's unpatched cache, would miss part of it)."""
        return self.positions == "all"

    def continuing(self) -> Intervention | None:
        """What of it applies to each generated token fed back (positions ``all`` and ``generated``),
        or None."""
        return self if self.positions in ("all", "generated") else None


@dataclasses.dataclass(frozen=True)
class Interventions:
    """Several interventions applied together in one pass, each with its own site, layers, positions,
    operation and vectors, on the same rows; where two act on the same module they apply in order."""

    records: tuple[Intervention, ...]

    def __post_init__(self) -> None:
        records = tuple(self.records)
        if not records or not all(isinstance(r, Intervention) for r in records):
            raise ValueError("Interventions holds one Intervention or more")
        rows = {r.n_rows for r in records} - {None}
        if len(rows) > 1:
            raise ValueError(f"the interventions are given for different numbers of rows: {sorted(rows)}")
        object.__setattr__(self, "records", records)

    @property
    def n_rows(self) -> int | None:
        return next((r.n_rows for r in self.records if r.per_row), None)

    @property
    def per_row(self) -> bool:
        return self.n_rows is not None

    def select(self, rows: Sequence[int] | np.ndarray | torch.Tensor) -> Interventions:
        return Interventions(tuple(r.select(rows) for r in self.records))

    def to(self, device: torch.device | str) -> Interventions:
        return Interventions(tuple(r.to(device) for r in self.records))

    @property
    def whole_text(self) -> bool:
        return any(r.whole_text for r in self.records)

    def continuing(self) -> Interventions | None:
        kept = tuple(r for r in self.records if r.continuing() is not None)
        return Interventions(kept) if kept else None


def projection_input(args, kwargs) -> tuple[torch.Tensor, str | None]:
    """A projection's input and, where it came by keyword (``input`` for Linear, ``x`` for Conv1D),
    its name."""
    if args:
        return args[0], None
    (name, value), *_ = kwargs.items()
    return value, name


def rotated(values: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """The in-context-vector rule on ``values`` (``[..., width]``), computed in float32 and returned in
    their dtype: each value turns toward ``vector`` (broadcast against it; its norm is the strength)
    and keeps its own norm; the push is larger where the value points away from the vector."""
    x, v = values.float(), vector.float().expand_as(values)
    norm = x.norm(dim=-1, keepdim=True)
    push = 1.0 + torch.nn.functional.cosine_similarity(x, -v, dim=-1).clamp(min=0.0)[..., None]
    turned = torch.nn.functional.normalize(torch.nn.functional.normalize(x, dim=-1) + push * v, dim=-1)
    return (turned * norm).to(values.dtype)


def _write(
    values: torch.Tensor,
    rows: torch.Tensor,
    heads,
    patch: torch.Tensor,
    positions: str,
    operation: str,
    scale=None,
    matrix: torch.Tensor | None = None,
):
    """Write ``patch`` (``[len(rows), width]``) into ``values`` in place: ``[batch, positions, width]``,
    or, given each row's head, ``[batch, positions, n_heads, width]``; an addition first multiplies
    the value by ``scale``, where given."""
    if positions == "all":
        index = (rows, slice(None)) if heads is None else (rows, slice(None), heads)
        patch = patch[:, None, :]
    else:
        index = (rows, -1) if heads is None else (rows, -1, heads)
    if operation == "add":
        kept = values[index] if scale is None else values[index] * scale
        values[index] = kept + patch
    elif operation == "rotate":
        values[index] = rotated(values[index], patch)
    elif operation == "linear":
        values[index] = values[index] @ matrix.to(values.dtype).T + patch
    else:
        values[index] = patch


@contextlib.contextmanager
def intervene(arch: Architecture, intervention: Intervention | Interventions) -> Iterator:
    """Apply ``intervention`` to every forward pass inside the ``with`` block, on a batch whose rows
    are the intervention's rows. Yields a counter: for each layer, the passes whose activations it
    changed; for :class:`Interventions`, a list of such counters, one per record."""
    records = intervention.records if isinstance(intervention, Interventions) else (intervention,)
    counters = [Counter() for _ in records]
    handles: list = []
    try:
        for record, fired in zip(records, counters):
            handles.extend(_register(arch, record, fired))
        yield counters if isinstance(intervention, Interventions) else counters[0]
    finally:
        for handle in handles:
            handle.remove()


def _register(arch: Architecture, intervention: Intervention, fired: Counter) -> list:
    """Register one record's hooks (counting into ``fired``); returns their handles."""
    modules = arch.site_modules(intervention.site)
    n_rows = intervention.n_rows
    layer_of_row = intervention.layers
    vectors = intervention.vectors
    if not layer_of_row.ndim:
        layer_of_row = layer_of_row.expand(n_rows or 1)
    heads = intervention.heads
    if heads is not None and not heads.ndim:
        heads = heads.expand(len(layer_of_row))
    bad = [int(layer) for layer in layer_of_row.unique() if layer >= len(modules) or layer < -1]
    if bad:
        raise ValueError(f"layers {bad} are outside the model's {len(modules)} blocks")
    shared = not intervention.per_row  # one layer and one vector for every row: the whole batch

    def make_hook(index: int):
        # Each block's rows, vectors and heads are picked out once, before the pass; the hook only
        # writes them, so the pass waits on no host-device copy.
        rows_cpu = torch.nonzero(layer_of_row == index).flatten()
        rows = to_device(rows_cpu, vectors.device)
        patch = vectors[rows] if vectors.ndim == 2 else vectors[None, :]
        row_heads = None if heads is None else to_device(heads[rows_cpu], vectors.device)

        def apply(values: torch.Tensor) -> None:
            n = values.shape[0]
            target = torch.arange(n, device=values.device) if shared else rows.to(values.device)
            values_patch = patch.to(values.device, values.dtype)
            on_heads = None
            if row_heads is not None:
                width = patch.shape[-1]
                values = values.view(*values.shape[:-1], values.shape[-1] // width, width)
                on_heads = row_heads.to(values.device).expand(n) if shared else row_heads.to(values.device)
            if shared:
                values_patch = values_patch.expand(n, -1)
            scale = intervention.scale
            if isinstance(scale, torch.Tensor):
                scale = scale.to(values.device, values.dtype)
            matrix = None if intervention.matrix is None else intervention.matrix.to(values.device)
            _write(
                values, target, on_heads, values_patch, intervention.positions, intervention.operation, scale, matrix
            )
            fired[index] += 1

        if intervention.site in INPUT_SITES:

            def pre_hook(module, args, kwargs):
                z, name = projection_input(args, kwargs)
                z = z.clone()
                apply(z)
                if name is None:
                    return (z, *args[1:]), kwargs
                return args, {**kwargs, name: z}

            return pre_hook, True

        def hook(module, args, output):
            apply(block_hidden(output))
            return output

        return hook, False

    present = sorted(set(layer_of_row.tolist()) - {-1})
    handles = []
    try:
        for i in present:
            hook, before = make_hook(i)
            if before:
                handles.append(modules[i].register_forward_pre_hook(hook, with_kwargs=True))
            else:
                handles.append(modules[i].register_forward_hook(hook))
    except BaseException:
        for handle in handles:
            handle.remove()
        raise
    return handles
