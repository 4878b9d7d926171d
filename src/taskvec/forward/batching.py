"""Batches of prompts: left padding with explicit position ids, batches of similar length, results
copied to the host without waiting, out-of-memory back-off, and the cheapest split of ordered items
into consecutive runs (the extraction's suffix passes and the layer sweep's passes)."""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from taskvec.errors import OutOfMemory
from taskvec.hooks import to_device
from taskvec.models import LoadedModel

log = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_SIZE_SETTING = "the batch size (--batch-size; compute.batch_size in a study)"


def is_out_of_memory(error: BaseException) -> bool:
    """An accelerator allocation failure: PyTorch's own, or one from a library's workspace (cuBLAS,
    cuDNN) that reaches Python as a plain RuntimeError."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(
        sign in str(error) for sign in ("out of memory", "ALLOC_FAILED", "OUT_OF_MEMORY")
    )


def with_batch_backoff(run: Callable[[int], T], batch_size: int, what: str) -> tuple[T, int]:
    """``run(batch_size)`` and the batch size it succeeded at: whenever the accelerator runs out of
    memory, the batch size halves and ``run`` starts again; at batch size 1 it stops with a message
    naming the settings to change.

    ``run`` must start from scratch on each call (no output written before it returns), so that a
    retry gives what one uninterrupted run at the smaller batch size gives.
    """
    while True:
        try:
            return run(batch_size), batch_size
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            if batch_size <= 1:
                raise OutOfMemory(
                    f"out of accelerator memory on {what} even at batch size 1: the model does not fit this "
                    f"device with these prompts ({error})"
                ) from error
            smaller = max(1, batch_size // 2)
            log.warning(
                "out of accelerator memory on %s at batch size %d; starting it again at batch size %d "
                "(lower %s to skip this)",
                what,
                batch_size,
                smaller,
                BATCH_SIZE_SETTING,
            )
        # Outside the except block, the failed attempt's tensors (held by the traceback) are gone.
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        batch_size = smaller


# Batch widths are rounded up to a multiple of this on each device type (more masked left padding), so
# that a GPU sees a few recurring shapes (its kernels are chosen, and tuned, per shape) and tensor cores
# get aligned rows. Padding changes no result (tests check it on the CPU with the GPU's setting).
PAD_MULTIPLE = {"cpu": 1, "cuda": 8}


def _pad_multiple(lm: LoadedModel) -> int:
    return PAD_MULTIPLE.get(lm.device.type, 1)


@dataclasses.dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor

    def inputs(self, start: int = 0, stop: int | None = None) -> dict[str, torch.Tensor]:
        """The model inputs for columns ``start:stop`` (used to split off the last token)."""
        return {
            "input_ids": self.input_ids[:, start:stop],
            "attention_mask": self.attention_mask[:, :stop],
            "position_ids": self.position_ids[:, start:stop],
        }


def encode(lm: LoadedModel, texts: Sequence[str]) -> Batch:
    """Tokenize ``texts`` (with the tokenizer's own special tokens) and left-pad them."""
    ids, mask = left_pad([lm.tokenizer.encode(text) for text in texts], lm.pad_token_id, width_multiple(lm))
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return Batch(to_device(ids, lm.device), to_device(mask, lm.device), to_device(positions, lm.device))


def batches(texts: Sequence[str], batch_size: int) -> Iterator[np.ndarray]:
    """Indices of ``texts`` in batches of similar length (less padding), in a fixed order."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


class HostCopies:
    """Per-batch results copied into ``out`` without making the host wait for each batch: on an
    accelerator each result starts its copy into pinned host memory as soon as it is queued (the
    copy runs while the next batches compute) and ``flush`` waits once, at the end or whenever
    ``PENDING_BYTES`` wait; a blocking copy after every batch would stall the queue each time. On
    the CPU the copies are plain assignments, in the same order."""

    PENDING_BYTES = 1 << 28

    def __init__(self, out: np.ndarray) -> None:
        self.out, self.pending, self.bytes = out, [], 0

    def add(self, index, tensor: torch.Tensor) -> None:
        if self.out.dtype == np.float32:
            tensor = tensor.float()
        if tensor.device.type == "cuda":
            host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            host.copy_(tensor, non_blocking=True)
            tensor = host
        self.pending.append((index, tensor))
        self.bytes += tensor.numel() * tensor.element_size()
        if self.bytes > self.PENDING_BYTES:
            self.flush()

    def flush(self) -> None:
        if any(tensor.is_pinned() for _, tensor in self.pending):
            torch.cuda.synchronize()
        for index, tensor in self.pending:
            self.out[index] = tensor.cpu().numpy()
        self.pending, self.bytes = [], 0


def progress_bar(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, unit="prompt", disable=not enabled, leave=False)


def left_pad(token_lists: Sequence[Sequence[int]], pad_id: int, multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(tokens) for tokens in token_lists)
    width = -(-width // multiple) * multiple if width else 0
    ids = torch.full((len(token_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), width), dtype=torch.long)
    for row, tokens in enumerate(token_lists):
        if tokens:
            ids[row, width - len(tokens) :] = torch.tensor(list(tokens), dtype=torch.long)
            mask[row, width - len(tokens) :] = 1
    return ids, mask


def min_sliding_window(lm: LoadedModel) -> int | None:
    window = getattr(lm.model.config, "sliding_window", None)
    return int(window) if window else None


def width_multiple(lm: LoadedModel) -> int:
    """The device's width multiple, except for a model with a sliding window: its window counts columns,
    padding included, so a batch is never made wider than its longest prompt."""
    return 1 if min_sliding_window(lm) is not None else _pad_multiple(lm)


def cheapest_runs(n_items: int, cost: Callable[[int, int], float]) -> list[tuple[int, int]]:
    """Split items ``0..n_items-1`` (in their order) into consecutive runs ``[start, end)`` that
    minimise the sum of ``cost(start, end)`` over the runs (dynamic programming; ties go to the
    earlier split)."""
    best = [0.0] + [math.inf] * n_items
    start_of = [0] * (n_items + 1)
    for end in range(1, n_items + 1):
        for start in range(end):
            total = best[start] + cost(start, end)
            if total < best[end]:
                best[end], start_of[end] = total, start
    runs, end = [], n_items
    while end > 0:
        runs.append((start_of[end], end))
        end = start_of[end]
    return runs[::-1]
