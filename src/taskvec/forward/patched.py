"""Patched forward passes: next tokens under an intervention (:class:`taskvec.hooks.intervention.Intervention`),
next tokens under several interventions sharing one prefix pass (:func:`next_token_variants`), and the
layer sweep (one prefix pass, then the last token from each patched layer up) and its pass plan."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from taskvec.architectures import describe
from taskvec.forward.batching import Batch, HostCopies, batches, cheapest_runs, encode, progress_bar
from taskvec.hooks import to_device
from taskvec.hooks.capture import capture_last_token
from taskvec.hooks.intervention import Intervention, Interventions, intervene
from taskvec.hooks.patch import start_at_layer
from taskvec.models import LoadedModel


@torch.inference_mode()
def patched_next_tokens(
    lm: LoadedModel,
    texts: Sequence[str],
    intervention: Intervention | Interventions,
    batch_size: int = 16,
    progress: bool = False,
    log_probs: np.ndarray | None = None,
) -> np.ndarray:
    """Argmax next token after each whole text under ``intervention`` (its rows are the texts; for
    example another task's theta replacing a block's output at the last position of an ICL prompt):
    ``[n]`` ids. Where ``log_probs`` (``[n, vocab]`` float32) is given, each text's next-token
    log-distribution is written into it."""
    arch = describe(lm.model)
    intervention = intervention.to(lm.device)
    result = np.zeros(len(texts), dtype=np.int64)
    copies = HostCopies(result)
    with progress_bar(len(texts), "patch", progress) as bar:
        for rows in batches(texts, batch_size):
            batch = encode(lm, [texts[i] for i in rows])
            with intervene(arch, intervention.select(rows)):
                logits = lm.model(**batch.inputs(), use_cache=False, logits_to_keep=1).logits
            copies.add(rows, logits[:, -1, :].argmax(dim=-1))
            if log_probs is not None:
                log_probs[rows] = torch.log_softmax(logits[:, -1, :].float(), dim=-1).cpu().numpy()
            bar.update(len(rows))
    copies.flush()
    return result


def task_vector_patch(layers: Sequence[int], thetas: np.ndarray) -> Intervention:
    """The task vector's intervention: ``thetas[i]`` replaces block ``layers[i]``'s output at the last
    position of text ``i``."""
    return Intervention(np.asarray(layers), thetas)


@dataclasses.dataclass
class Variants:
    """Next-token predictions after each text, unpatched (``plain``) and under each intervention."""

    plain: np.ndarray  # [n_texts] token ids
    tokens: list[np.ndarray]  # per intervention, [n_texts] token ids
    log_probs: list[np.ndarray | None]  # per intervention, [n_texts, vocab] where it was asked for


@torch.inference_mode()
def next_token_variants(
    lm: LoadedModel,
    texts: Sequence[str],
    interventions: Sequence[Intervention | Interventions],
    batch_size: int = 16,
    log_probs: Sequence[int] = (),
) -> Variants:
    """Next-token predictions after each text, unpatched and under each of ``interventions`` (their
    rows are the texts), sharing the work: each text's tokens but the last run once (KV cache); the
    last token then runs unpatched (recording every block's output) and once per intervention on a
    copy of the same cache: for one layer's block output, from block ``layer + 1`` up, fed the
    patched stream; otherwise through every block under the intervention (at every position, the
    whole text runs under it). For the interventions whose indices are in ``log_probs``, the next
    token's whole log-distribution is kept, not only its top token."""
    arch = describe(lm.model)
    vocab = arch.unembedding.weight.shape[0]
    interventions = [intervention.to(lm.device) for intervention in interventions]
    plain = np.zeros(len(texts), dtype=np.int64)
    tokens = [np.zeros(len(texts), dtype=np.int64) for _ in interventions]
    kept = [np.zeros((len(texts), vocab), dtype=np.float32) if i in log_probs else None for i in range(len(tokens))]
    for rows in batches(texts, batch_size):
        batch = encode(lm, [texts[i] for i in rows])
        prefix = None
        if batch.input_ids.shape[1] > 1:
            prefix = lm.model.base_model(**batch.inputs(0, -1), use_cache=True).cache
        with capture_last_token(arch.layers) as states:
            logits = lm.model(
                **batch.inputs(-1), cache=copy.deepcopy(prefix), use_cache=prefix is not None, logits_to_keep=1
            ).logits
        plain[rows] = logits[:, -1, :].argmax(dim=-1).cpu().numpy()
        for index, intervention in enumerate(interventions):
            under = intervention.select(rows)
            if under.whole_text:
                with intervene(arch, under):
                    logits = lm.model(**batch.inputs(), use_cache=False, logits_to_keep=1).logits[:, -1, :]
            elif (
                isinstance(under, Intervention)
                and under.site == "block_output"
                and under.operation in ("replace", "add")
                and not under.layers.ndim
            ):
                layer = int(under.layers)
                values = under.vectors.to(states[layer].dtype)
                fed = states[layer] + values if under.operation == "add" else values
                with start_at_layer(arch.layers, arch.final_norm, layer + 1, fed.expand_as(states[layer])):
                    logits = lm.model(
                        **batch.inputs(-1), cache=copy.deepcopy(prefix), use_cache=prefix is not None, logits_to_keep=1
                    ).logits[:, -1, :]
            else:
                with intervene(arch, under):
                    logits = lm.model(
                        **batch.inputs(-1), cache=copy.deepcopy(prefix), use_cache=prefix is not None, logits_to_keep=1
                    ).logits[:, -1, :]
            tokens[index][rows] = logits.argmax(dim=-1).cpu().numpy()
            if kept[index] is not None:
                kept[index][rows] = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
    return Variants(plain, tokens, kept)


def sweep_rows(vectors: torch.Tensor, layers: Sequence[int], device: torch.device):
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


def unembedding_blocks(lm: LoadedModel) -> float:
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

    def cost(start: int, end: int) -> float:
        rows = n_queries * (end - start)
        blocks = n_layers - (ordered[start] + 1) + unembedding_blocks
        return blocks * max(rows, balance_rows) + pass_overhead_blocks * balance_rows

    return [ordered[start:end] for start, end in cheapest_runs(len(ordered), cost)]


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
    unembedding = unembedding_blocks(lm)
    result = np.zeros((len(queries), len(layers)), dtype=np.int64)
    copies = HostCopies(result)
    with progress_bar(len(queries), "sweep", progress) as bar:
        for rows in batches(queries, batch_size):
            batch = encode(lm, [queries[i] for i in rows])
            prefix_cache = None
            if batch.input_ids.shape[1] > 1:
                prefix_cache = lm.model.base_model(**batch.inputs(0, -1), use_cache=True).cache
            for chunk in sweep_plan(layers, len(rows), arch.n_layers, balance, unembedding):
                columns = [column_of[layer] for layer in chunk]
                layer_of_row, theta = sweep_rows(
                    torch.from_numpy(np.ascontiguousarray(vectors[rows])), chunk, lm.device
                )
                cache = copy.deepcopy(prefix_cache)
                if cache is not None:
                    cache.batch_repeat_interleave(len(chunk))
                last = {name: t.repeat_interleave(len(chunk), dim=0) for name, t in batch.inputs(-1).items()}
                # Rows whose layer is above the chunk's lowest are overwritten at their own layer.
                with (
                    intervene(arch, Intervention(layer_of_row, theta)),
                    start_at_layer(arch.layers, arch.final_norm, chunk[0] + 1, theta),
                ):
                    logits = lm.model(**last, cache=cache, use_cache=cache is not None, logits_to_keep=1).logits
                copies.add(np.ix_(rows, columns), logits[:, -1, :].argmax(dim=-1).view(len(rows), len(chunk)))
            bar.update(len(rows))
    copies.flush()
    return result


def _naive_rows(lm, arch, batch: Batch, layer_of_row: torch.Tensor, patch: torch.Tensor, n_layers: int) -> np.ndarray:
    repeated = {name: t.repeat_interleave(n_layers, dim=0) for name, t in batch.inputs().items()}
    with intervene(arch, Intervention(layer_of_row, patch)):
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
        layer_of_row, patch = sweep_rows(vectors_t[rows], layers, lm.device)
        result[rows] = _naive_rows(lm, arch, batch, layer_of_row, patch, len(layers))
    return result
