"""Implicit ICL's calibration step against the least time reading its weights takes.

A calibration step (:func:`taskvec.methods.implicit_icl.train_coefficients`) is one forward and one backward
pass over :data:`~taskvec.methods.implicit_icl.BATCH` bare queries, a dozen tokens in all. At that size each
weight matrix serves a dozen rows, so the step is bounded by reading the matrices from memory, not by
arithmetic: the forward reads every linear layer of the blocks and the output layer once (the loss
needs the whole vocabulary), and the backward reads each once more (the gradient with respect to its
input; the model's own weights get no gradient). The *floor* is those bytes, twice, over the fastest
read rate measured on this machine with the same threads: no implementation of the same step, with
the same batch, in the same dtype, takes less. The step is timed with the threads the comparison job
runs with (one: the two models' jobs run side by side).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from taskvec import defaults
from taskvec.bench.timing import synchronize, timed
from taskvec.models import LoadedModel, load_model

COMPARISON_THREADS = 1  # the compare_methods rule's threads
READ_BYTES = 1 << 29  # 512 MiB: larger than any cache


def matrix_bytes(lm: LoadedModel) -> int:
    """Bytes of every linear layer's weight (and bias) in the model, the output layer's included (a
    tied output layer is the embedding matrix, read as a matrix)."""
    return sum(
        p.numel() * p.element_size()
        for module in lm.model.modules()
        if isinstance(module, torch.nn.Linear)
        for p in module.parameters(recurse=False)
    )


def read_rate(lm: LoadedModel, repeats: int) -> dict:
    """Bytes per second read from memory, the best of two ways: summing a buffer larger than any
    cache, and a two-row matrix product over a matrix of that size (what the step's layers do)."""
    n = READ_BYTES // lm.model.dtype.itemsize
    columns = 1024
    buffer = torch.ones(n, dtype=lm.model.dtype, device=lm.device)
    rows = torch.ones(2, n // columns, dtype=lm.model.dtype, device=lm.device)
    matrix = buffer.view(n // columns, columns)
    nbytes = buffer.numel() * buffer.element_size()
    sums = timed(buffer.sum, repeats, lm.device)
    products = timed(lambda: rows @ matrix, repeats, lm.device)
    return {
        "sum_gb_per_s": round(nbytes / sums.min / 1e9, 2),
        "matmul_gb_per_s": round(nbytes / products.min / 1e9, 2),
    }


def calibration_step(
    lm: LoadedModel, prompts_file: Path, repeats: int, threads: int = COMPARISON_THREADS, pool: int = defaults.POOL
) -> dict:
    """Median forward and backward seconds of the calibration's steps on the pairs of ``pool`` of the
    task's prompts, beside the step's read floor, at ``threads`` torch threads."""
    from taskvec.bench.workloads import dev_queries
    from taskvec.methods import implicit_icl
    from taskvec.methods.pool import pool_pairs

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        prompts, _, fmt = dev_queries(prompts_file)
        pairs = pool_pairs([p for p in prompts if p.demonstrations][:pool])
        queries, targets = implicit_icl.calibration_targets(lm, pairs, fmt)
        contexts = torch.from_numpy(implicit_icl.context_vectors(lm, pairs, fmt)).to(lm.device)
        weights, scales = implicit_icl.initial_coefficients(contexts.shape[0], lm.device)
        generator = torch.Generator().manual_seed(0)
        forward, backward = [], []
        for step, rows in enumerate(implicit_icl.batch_order(len(pairs), repeats + 1, seed=0)):
            synchronize(lm.device)
            start = time.perf_counter()
            batch, answers = [queries[i] for i in rows], targets[torch.from_numpy(rows)]
            loss = implicit_icl.calibration_loss(lm, batch, answers, contexts, weights, scales, generator=generator)
            synchronize(lm.device)
            middle = time.perf_counter()
            torch.autograd.grad(loss, [weights, scales])
            synchronize(lm.device)
            if step:  # the first step warms up
                forward.append(middle - start)
                backward.append(time.perf_counter() - middle)
        rate = read_rate(lm, repeats)
    finally:
        torch.set_num_threads(previous)
    read = matrix_bytes(lm)
    output = lm.model.get_output_embeddings().weight
    best = max(rate.values()) * 1e9
    step = statistics.median(forward) + statistics.median(backward)
    return {
        "threads": threads,
        "batch": implicit_icl.BATCH,
        "forward_seconds": round(statistics.median(forward), 4),
        "backward_seconds": round(statistics.median(backward), 4),
        "step_seconds": round(step, 4),
        "matrix_mb": round(read / 1e6, 1),
        "output_layer_mb": round(output.numel() * output.element_size() / 1e6, 1),
        **rate,
        "floor_seconds": round(2 * read / best, 4),
        "over_floor": round(step * best / (2 * read), 2),
    }


def calibration_seconds(model_dir: Path, prompts_file: Path, repeats: int, device: str, dtype: str) -> dict:
    """:func:`calibration_step` on a model loaded from ``model_dir``."""
    return calibration_step(load_model(model_dir, device=device, dtype=dtype), prompts_file, repeats)
