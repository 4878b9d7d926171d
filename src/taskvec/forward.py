"""Batched forward passes: left padding with explicit position ids, last-token capture,
next-token prediction and the patched layer sweep.

Left padding puts every prompt's last token in the last column, which is the only position taskvec
reads or patches. Position ids count real tokens only, so a padded prompt computes exactly what it
computes alone (tests check batched against unbatched).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from taskvec.architectures import describe
from taskvec.hooks import capture_last_token, replace_last_token, start_at_layer, to_device
from taskvec.models import LoadedModel
from taskvec.scoring import answer_ended

log = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_SIZE_SETTING = "compute.batch_size in params.yaml (--batch-size on the command line)"


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
                raise MemoryError(
                    f"out of accelerator memory on {what} even at batch size 1: the model does not fit this "
                    f"device with these prompts; use a smaller model, a smaller compute.dtype (bfloat16 rather "
                    f"than float32), or the CPU (compute.device cpu). ({error})"
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
    ids, mask = _left_pad([lm.tokenizer.encode(text) for text in texts], lm.pad_token_id, _width_multiple(lm))
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return Batch(to_device(ids, lm.device), to_device(mask, lm.device), to_device(positions, lm.device))


def batches(texts: Sequence[str], batch_size: int) -> Iterator[np.ndarray]:
    """Indices of ``texts`` in batches of similar length (less padding), in a fixed order."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


class _HostCopies:
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


def _progress(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, unit="prompt", disable=not enabled, leave=False)


@torch.inference_mode()
def last_token_states(
    lm: LoadedModel, texts: Sequence[str], batch_size: int = 16, progress: bool = False
) -> np.ndarray:
    """Residual stream after every block at each text's last token: ``[n_texts, n_layers, hidden]``."""
    layers = describe(lm.model).layers
    result = np.zeros((len(texts), len(layers), lm.model.config.hidden_size), dtype=np.float32)
    copies = _HostCopies(result)
    with _progress(len(texts), "extract", progress) as bar:
        for rows in batches(texts, batch_size):
            batch = encode(lm, [texts[i] for i in rows])
            with capture_last_token(layers) as states:
                lm.model.base_model(**batch.inputs(), use_cache=False)
            copies.add(rows, torch.stack(states, dim=1))
            bar.update(len(rows))
    copies.flush()
    return result


def _shared_prefix_split(token_lists: Sequence[list[int]]) -> int:
    """Length of the longest token prefix common to every list, leaving each at least one token."""
    shortest = min(len(tokens) for tokens in token_lists)
    common = 0
    while common < shortest - 1 and all(tokens[common] == token_lists[0][common] for tokens in token_lists):
        common += 1
    return common


def _left_pad(
    token_lists: Sequence[Sequence[int]], pad_id: int, multiple: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(tokens) for tokens in token_lists)
    width = -(-width // multiple) * multiple if width else 0
    ids = torch.full((len(token_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), width), dtype=torch.long)
    for row, tokens in enumerate(token_lists):
        if tokens:
            ids[row, width - len(tokens) :] = torch.tensor(list(tokens), dtype=torch.long)
            mask[row, width - len(tokens) :] = 1
    return ids, mask


def _min_sliding_window(lm: LoadedModel) -> int | None:
    window = getattr(lm.model.config, "sliding_window", None)
    return int(window) if window else None


def _width_multiple(lm: LoadedModel) -> int:
    """The device's width multiple, except for a model with a sliding window: its window counts columns,
    padding included, so a batch is never made wider than its longest prompt."""
    return 1 if _min_sliding_window(lm) is not None else _pad_multiple(lm)


@torch.inference_mode()
def shared_prefix_states(
    lm: LoadedModel,
    groups: Sequence[Sequence[str]],
    batch_size: int = 16,
    progress: bool = False,
    continue_last: Continuation | None = None,
    answers: Sequence[Sequence[str]] | None = None,
) -> np.ndarray | tuple[np.ndarray, list[list[int]]]:
    """Last-token block outputs of every text in ``groups``: ``[n_groups, group_size, n_layers, hidden]``.

    The texts of a group share a long prefix (the demonstrations) and differ in a short suffix (the
    query). Each group's common token prefix runs once; its KV cache is then reused by every suffix.
    Texts are tokenized whole, so the result equals running each text alone.

    With ``continue_last``, the last text of each group (the ICL prompt) is also continued greedily
    on its own cache, starting from its argmax next token; the generated ids per group are returned
    beside the states. ``answers`` (per group) stops a generation that can no longer become one.
    """
    layers = describe(lm.model).layers
    group_size = len(groups[0])
    if any(len(group) != group_size for group in groups):
        raise ValueError("every group needs the same number of texts")
    hidden = lm.model.config.hidden_size
    result = np.zeros((len(groups), group_size, len(layers), hidden), dtype=np.float32)
    tokenized = [[lm.tokenizer.encode(text) for text in group] for group in groups]
    window = _min_sliding_window(lm)
    if window is not None and max(len(t) for group in tokenized for t in group) > window:
        flat = last_token_states(lm, [text for group in groups for text in group], batch_size, progress)
        result = flat.reshape(result.shape)
        if continue_last is None:
            return result
        first = next_tokens_from_states(lm, result[:, -1, -1])
        return result, greedy_continue(
            lm, [group[-1] for group in groups], first.tolist(), continue_last, batch_size, answers=answers
        )
    generated: list[list[int]] = [[] for _ in groups]
    splits = [_shared_prefix_split(group) for group in tokenized]
    keys = [" ".join(group) for group in groups]
    copies = _HostCopies(result.reshape(len(groups) * group_size, len(layers), hidden))
    with _progress(len(groups), "extract", progress) as bar:
        for rows in batches(keys, batch_size):
            flat_rows = (rows[:, None] * group_size + np.arange(group_size)).reshape(-1)
            prefix_ids, prefix_mask = _left_pad(
                [tokenized[i][0][: splits[i]] for i in rows], lm.pad_token_id, _width_multiple(lm)
            )
            prefix_cache = None
            if prefix_mask.any():
                prefix_positions = (prefix_mask.cumsum(dim=1) - 1).clamp(min=0)
                prefix_cache = lm.model.base_model(
                    input_ids=to_device(prefix_ids, lm.device),
                    attention_mask=to_device(prefix_mask, lm.device),
                    position_ids=to_device(prefix_positions, lm.device),
                    use_cache=True,
                ).cache
            else:
                prefix_mask = prefix_mask[:, :0]
            suffixes = [t[splits[i] :] for i in rows for t in tokenized[i]]
            buckets = _length_buckets(np.array([len(t) for t in suffixes]))
            for number, bucket in enumerate(buckets):
                group_of_row = torch.from_numpy(bucket // group_size)
                cache = None
                if prefix_cache is not None:
                    cache = prefix_cache if number == len(buckets) - 1 else copy.deepcopy(prefix_cache)
                    cache.reorder_cache(to_device(group_of_row, lm.device))
                suffix_ids, suffix_mask = _left_pad([suffixes[i] for i in bucket], lm.pad_token_id, _width_multiple(lm))
                # Suffixes are left-padded after the prefix: padding sits mid-row, masked out, and
                # positions continue from each row's own prefix length.
                row_prefix_mask = prefix_mask[group_of_row]
                positions = (row_prefix_mask.sum(dim=1, keepdim=True) + suffix_mask.cumsum(dim=1) - 1).clamp(min=0)
                mask = to_device(torch.cat([row_prefix_mask, suffix_mask], dim=1), lm.device)
                positions = to_device(positions, lm.device)
                with capture_last_token(layers) as states:
                    out = lm.model.base_model(
                        input_ids=to_device(suffix_ids, lm.device),
                        attention_mask=mask,
                        position_ids=positions,
                        cache=cache,
                        use_cache=cache is not None or continue_last is not None,
                    )
                copies.add(flat_rows[bucket], torch.stack(states, dim=1))
                last = np.nonzero(bucket % group_size == group_size - 1)[0]
                if continue_last is not None and len(last):
                    selected = to_device(torch.from_numpy(last), lm.device)
                    out.cache.reorder_cache(selected)
                    first = read_out(lm, states[-1][selected].float().cpu().numpy()).argmax(dim=-1).tolist()
                    owners = [int(flat_rows[bucket[i]]) // group_size for i in last]
                    continued = [generated[group] for group in owners]
                    for ids, token in zip(continued, first):
                        ids.append(int(token))
                    _decode(
                        lm,
                        out.cache,
                        mask[selected],
                        positions[selected, -1:],
                        continued,
                        continue_last,
                        None if answers is None else [answers[group] for group in owners],
                    )
            bar.update(len(rows))
    copies.flush()
    return result if continue_last is None else (result, generated)


PASS_OVERHEAD_TOKENS = 64  # a pass's fixed cost (cache copy, kernel launches), in padded suffix tokens


def _length_buckets(lengths: np.ndarray) -> list[np.ndarray]:
    """Split rows into runs of similar length (indices into ``lengths``), minimising padded tokens
    plus a fixed cost per run: suffixes of one to a dozen tokens padded to the longest waste more
    than half of a suffix pass."""
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order]
    n = len(order)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    start_of = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        for start in range(end):
            cost = best[start] + (end - start) * sorted_lengths[end - 1] + PASS_OVERHEAD_TOKENS
            if cost < best[end]:
                best[end], start_of[end] = cost, start
    buckets, end = [], n
    while end > 0:
        buckets.append(np.sort(order[start_of[end] : end]))
        end = start_of[end]
    return buckets[::-1]


@torch.inference_mode()
def next_tokens(lm: LoadedModel, texts: Sequence[str], batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """Argmax next token after each text: ``[n_texts]`` token ids."""
    result = np.zeros(len(texts), dtype=np.int64)
    copies = _HostCopies(result)
    with _progress(len(texts), "predict", progress) as bar:
        for rows in batches(texts, batch_size):
            batch = encode(lm, [texts[i] for i in rows])
            logits = lm.model(**batch.inputs(), use_cache=False, logits_to_keep=1).logits[:, -1, :]
            copies.add(rows, logits.argmax(dim=-1))
            bar.update(len(rows))
    copies.flush()
    return result


@torch.inference_mode()
def patched_next_tokens(
    lm: LoadedModel,
    texts: Sequence[str],
    layers: Sequence[int],
    vectors: np.ndarray,
    batch_size: int = 16,
    progress: bool = False,
) -> np.ndarray:
    """Argmax next token after each whole text with ``vectors[i]`` replacing block ``layers[i]``'s
    output at its last position (for example another task's theta in an ICL prompt): ``[n]`` ids."""
    arch = describe(lm.model)
    layer_index = torch.as_tensor(np.asarray(layers), dtype=torch.long)
    patches = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    result = np.zeros(len(texts), dtype=np.int64)
    copies = _HostCopies(result)
    with _progress(len(texts), "patch", progress) as bar:
        for rows in batches(texts, batch_size):
            batch = encode(lm, [texts[i] for i in rows])
            index = torch.from_numpy(rows)
            with replace_last_token(arch.layers, layer_index[index], to_device(patches[index], lm.device)):
                logits = lm.model(**batch.inputs(), use_cache=False, logits_to_keep=1).logits
            copies.add(rows, logits[:, -1, :].argmax(dim=-1))
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
    copies = _HostCopies(result)
    for start in range(0, len(last_block_states), batch_size):
        rows = slice(start, start + batch_size)
        copies.add(rows, read_out(lm, last_block_states[rows]).argmax(dim=-1))
    copies.flush()
    return result


def _sweep_rows(vectors: torch.Tensor, layers: Sequence[int], device: torch.device):
    """Rows ordered (prompt, layer): which layer each row patches and with which vector."""
    n_prompts = vectors.shape[0]
    layer_index = torch.tensor(list(layers), dtype=torch.long)
    layer_of_row = layer_index.repeat(n_prompts)
    patch = vectors[:, layer_index, :].reshape(n_prompts * len(layers), -1)
    return layer_of_row, to_device(patch, device)


# How many one-token rows a pass takes before its time grows with its rows: below that it is bound by
# reading the weights (and, on the CPU, by per-pass work), so smaller passes save nothing. On the CPU,
# measured: the packaged models' 50-query sweeps take the same time at 256 and 512 rows, and longer at
# 128 or 1024 (`taskvec bench` checks the result); on a GPU, the bfloat16 FLOP rate over the memory
# bandwidth (about 295 rows on an H100, 2 FLOPs per 2-byte weight).
SWEEP_BALANCE_ROWS = {"cpu": 512, "cuda": 320}
SWEEP_PASS_OVERHEAD_BLOCKS = 2.0  # a pass's fixed cost (cache copy, launches), in blocks at the balance rows


def _unembedding_blocks(lm: LoadedModel) -> float:
    """The unembedding's cost per row, in decoder blocks (its parameters over one block's)."""
    arch = describe(lm.model)
    block = sum(p.numel() for p in arch.layers[0].parameters())
    return sum(p.numel() for p in arch.unembedding.parameters()) / max(block, 1)


def sweep_plan(
    layers: Sequence[int],
    n_queries: int,
    n_layers: int,
    balance_rows: int,
    unembedding_blocks: float = 1.0,
    pass_overhead_blocks: float = SWEEP_PASS_OVERHEAD_BLOCKS,
) -> list[list[int]]:
    """The sweep's passes: runs of neighbouring layers (ascending), each patched in one pass over
    ``n_queries`` queries, chosen to minimise the modelled time.

    A pass patching layers ``a..b`` runs ``n_queries * (b - a + 1)`` one-token rows through blocks
    ``a + 1`` onwards and the unembedding; a row whose layer is above ``a`` computes blocks it then
    overwrites. A block costs ``max(rows, balance_rows)``: below ``balance_rows`` a pass is bound by
    reading the weights, so splitting it saves nothing. Few large passes waste blocks, many small ones
    read the weights more often; the plan (dynamic programming over the sorted layers) balances the two.
    """
    ordered = sorted(layers)
    m = len(ordered)
    best = [0.0] + [float("inf")] * m
    start_of = [0] * (m + 1)
    for end in range(1, m + 1):
        for start in range(end):
            rows = n_queries * (end - start)
            blocks = n_layers - (ordered[start] + 1) + unembedding_blocks
            cost = best[start] + blocks * max(rows, balance_rows) + pass_overhead_blocks * balance_rows
            if cost < best[end]:
                best[end], start_of[end] = cost, start
    plan, end = [], m
    while end > 0:
        plan.append(ordered[start_of[end] : end])
        end = start_of[end]
    return plan[::-1]


@torch.inference_mode()
def patched_sweep(
    lm: LoadedModel,
    queries: Sequence[str],
    vectors: np.ndarray,
    layers: Sequence[int] | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> np.ndarray:
    """Next-token prediction for each query with ``vectors[i, l]`` patched in at block ``l``'s last
    position, for every layer in ``layers``: ``[n_queries, len(layers)]`` token ids.

    The patch changes neither the earlier positions nor the blocks below ``l``: the query prefix runs
    once and its KV cache is kept; then only the last token runs, from block ``l + 1`` up. Neighbouring
    layers share a pass (one row per prompt and layer, each row overwritten at its own layer), so that
    each weight read serves a few hundred rows: a single-token pass is bound by reading the weights.
    """
    arch = describe(lm.model)
    layers = list(range(arch.n_layers)) if layers is None else list(layers)
    column_of = {layer: column for column, layer in enumerate(layers)}
    if len(column_of) != len(layers):
        raise ValueError("each layer may appear once in a sweep")
    balance = SWEEP_BALANCE_ROWS.get(lm.device.type, SWEEP_BALANCE_ROWS["cuda"])
    unembedding = _unembedding_blocks(lm)
    result = np.zeros((len(queries), len(layers)), dtype=np.int64)
    copies = _HostCopies(result)
    with _progress(len(queries), "sweep", progress) as bar:
        for rows in batches(queries, batch_size):
            batch = encode(lm, [queries[i] for i in rows])
            prefix_cache = None
            if batch.input_ids.shape[1] > 1:
                prefix_cache = lm.model.base_model(**batch.inputs(0, -1), use_cache=True).cache
            for chunk in sweep_plan(layers, len(rows), arch.n_layers, balance, unembedding):
                columns = [column_of[layer] for layer in chunk]
                layer_of_row, theta = _sweep_rows(
                    torch.from_numpy(np.ascontiguousarray(vectors[rows])), chunk, lm.device
                )
                cache = copy.deepcopy(prefix_cache)
                if cache is not None:
                    cache.batch_repeat_interleave(len(chunk))
                last = {name: t.repeat_interleave(len(chunk), dim=0) for name, t in batch.inputs(-1).items()}
                # Rows whose layer is above the chunk's lowest are overwritten at their own layer.
                with (
                    replace_last_token(arch.layers, layer_of_row, theta),
                    start_at_layer(arch.layers, arch.final_norm, chunk[0] + 1, theta),
                ):
                    logits = lm.model(**last, cache=cache, use_cache=cache is not None, logits_to_keep=1).logits
                copies.add(np.ix_(rows, columns), logits[:, -1, :].argmax(dim=-1).view(len(rows), len(chunk)))
            bar.update(len(rows))
    copies.flush()
    return result


def _naive_rows(lm, arch, batch: Batch, layer_of_row: torch.Tensor, patch: torch.Tensor, n_layers: int) -> np.ndarray:
    repeated = {name: t.repeat_interleave(n_layers, dim=0) for name, t in batch.inputs().items()}
    with replace_last_token(arch.layers, layer_of_row, patch):
        logits = lm.model(**repeated, use_cache=False, logits_to_keep=1).logits
    return logits[:, -1, :].argmax(dim=-1).view(-1, n_layers).cpu().numpy()


@torch.inference_mode()
def patched_sweep_naive(
    lm: LoadedModel,
    queries: Sequence[str],
    vectors: np.ndarray,
    layers: Sequence[int] | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """Reference for :func:`patched_sweep`: a full patched forward of every query for every layer."""
    arch = describe(lm.model)
    layers = list(range(arch.n_layers)) if layers is None else list(layers)
    vectors_t = torch.from_numpy(np.ascontiguousarray(vectors))
    result = np.zeros((len(queries), len(layers)), dtype=np.int64)
    for rows in batches(queries, batch_size):
        batch = encode(lm, [queries[i] for i in rows])
        layer_of_row, patch = _sweep_rows(vectors_t[rows], layers, lm.device)
        result[rows] = _naive_rows(lm, arch, batch, layer_of_row, patch, len(layers))
    return result


@dataclasses.dataclass(frozen=True)
class Continuation:
    """When the strict metric's greedy generation stops: after ``max_new_tokens`` tokens, when the
    decoded generation reaches the separator ``stop`` that ends its answer (the rule the strict metric
    cuts by, :func:`taskvec.scoring.answer_ended`), at the end-of-text token, or, given a row's valid
    answers, as soon as the generation can no longer become one of them (its stripped text is not a
    prefix of any answer). The last rule changes no score, only saves the passes of answers already
    wrong; the recorded generation then ends where it went wrong."""

    max_new_tokens: int
    stop: str

    def finished(self, lm: LoadedModel, ids: list[int], answers: Sequence[str] | None = None) -> bool:
        if len(ids) >= self.max_new_tokens or ids[-1] == lm.tokenizer.eos_token_id:
            return True
        text = lm.tokenizer.decode(ids)
        if answer_ended(text, self.stop):
            return True
        return answers is not None and not any(answer.strip().startswith(text.strip()) for answer in answers)


def _decode(
    lm: LoadedModel,
    cache,
    mask: torch.Tensor,
    last_positions: torch.Tensor,
    generated: list[list[int]],
    until: Continuation,
    answers: Sequence[Sequence[str]] | None = None,
) -> None:
    """Greedy decoding on ``cache`` (one row per list in ``generated``, each holding at least the first
    generated token), appending to the lists in place. ``mask`` covers the cached positions and
    ``last_positions`` is each row's position of its last cached token (``[rows, 1]``). Rows that
    finish leave the batch (their cache rows are dropped), so the passes shrink as answers end.
    ``answers`` (per row) lets a row stop once it cannot become a valid answer."""

    def done(i: int) -> bool:
        return until.finished(lm, generated[i], answers[i] if answers is not None else None)

    active = [i for i in range(len(generated)) if not done(i)]
    if len(active) < len(generated):
        keep = torch.tensor(active, dtype=torch.long, device=lm.device)
        if active:
            cache.reorder_cache(keep)
        mask, last_positions = mask[keep], last_positions[keep]
    while active:
        tokens = torch.tensor([[generated[i][-1]] for i in active], dtype=torch.long, device=lm.device)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        last_positions = last_positions + 1
        out = lm.model(
            input_ids=tokens,
            attention_mask=mask,
            position_ids=last_positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.cache
        for i, token in zip(active, out.logits[:, -1, :].argmax(dim=-1).tolist()):
            generated[i].append(int(token))
        still = [j for j, i in enumerate(active) if not done(i)]
        if len(still) < len(active):
            keep = torch.tensor(still, dtype=torch.long, device=lm.device)
            if still:
                cache.reorder_cache(keep)
            mask, last_positions = mask[keep], last_positions[keep]
            active = [active[j] for j in still]


@torch.inference_mode()
def greedy_continue(
    lm: LoadedModel,
    texts: Sequence[str],
    first_tokens: Sequence[int],
    until: Continuation,
    batch_size: int = 16,
    layers: Sequence[int] | None = None,
    vectors: np.ndarray | None = None,
    answers: Sequence[Sequence[str]] | None = None,
    progress: bool = False,
) -> list[list[int]]:
    """Greedy generation after each text that starts from the given first token: ``first_tokens[i]``
    and what follows it, until ``until`` says stop. Returns the generated token ids per text.

    With ``layers`` and ``vectors``, ``vectors[i]`` replaces block ``layers[i]``'s output at the
    text's last position while the text runs (the task-vector patch); the generated tokens then follow
    on the patched cache, unpatched themselves. Starting from the first token that the study already
    predicted keeps the strict metric and the first-token metric about the same prediction. Given
    each text's valid ``answers``, a generation stops once it cannot become one of them.
    """
    arch = describe(lm.model)
    patched = layers is not None

    def answers_of(rows: Sequence[int]) -> list[Sequence[str]] | None:
        return None if answers is None else [answers[row] for row in rows]

    if patched:
        layer_index = torch.as_tensor(np.asarray(layers), dtype=torch.long)
        patches = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    generated: list[list[int]] = [[int(token)] for token in first_tokens]
    with _progress(len(texts), "generate", progress) as bar:
        for rows in batches(texts, batch_size):
            open_rows = [
                int(row)
                for row in rows
                if not until.finished(lm, generated[row], None if answers is None else answers[row])
            ]
            if open_rows:
                batch = encode(lm, [texts[row] for row in open_rows])
                index = torch.tensor(open_rows, dtype=torch.long)
                patch = (
                    replace_last_token(arch.layers, layer_index[index], to_device(patches[index], lm.device))
                    if patched
                    else contextlib.nullcontext()
                )
                with patch:
                    cache = lm.model.base_model(**batch.inputs(), use_cache=True).cache
                _decode(
                    lm,
                    cache,
                    batch.attention_mask,
                    batch.position_ids[:, -1:],
                    [generated[row] for row in open_rows],
                    until,
                    answers_of(open_rows),
                )
            bar.update(len(rows))
    return generated
