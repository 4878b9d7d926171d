"""One (model, task) of the study in one process: its prompts, task vectors and predictions.

Each of the three files could be made by its own command (`make-prompts`, `extract`, `evaluate`);
the study makes them together so that the model loads once per task and the ICL prompt runs as one
more suffix on the demonstrations that the task vectors are extracted from.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from taskvec.compute import DEFAULT_COMPUTE, Compute
from taskvec.evaluate import TaskScores, add_strict_scores, evaluate_task, score, write_results
from taskvec.extract import EVALUATED_SPLITS, activations_table, task_vectors_and_icl, write_activations
from taskvec.forward import with_batch_backoff
from taskvec.models import LoadedModel
from taskvec.prompts import Prompt, PromptFormat, SplitSizes, build_prompts, write_prompts

log = logging.getLogger(__name__)


def run_task(
    lm: LoadedModel,
    prompts: Sequence[Prompt],
    fmt: PromptFormat,
    batch_size: int = 16,
    progress: bool = False,
    scoring: str = "exact",
    strict: bool = False,
) -> tuple[list[Prompt], np.ndarray, pa.Table]:
    """Task vectors of the dev and test prompts (``[n, n_layers, hidden]``, in the order returned) and
    the predictions of every method (see :func:`taskvec.evaluate.evaluate_task`), scored by the
    paper's first-token rule ``scoring``; with ``strict``, also by the strict metric
    (:func:`taskvec.evaluate.add_strict_scores`).

    Out of accelerator memory, the task starts again at half the batch size."""
    evaluated, vectors, table, _ = run_task_backing_off(lm, prompts, fmt, batch_size, progress, scoring, strict)
    return evaluated, vectors, table


def run_task_backing_off(
    lm: LoadedModel,
    prompts: Sequence[Prompt],
    fmt: PromptFormat,
    batch_size: int,
    progress: bool = False,
    scoring: str = "exact",
    strict: bool = False,
) -> tuple[list[Prompt], np.ndarray, pa.Table, int]:
    """:func:`run_task`, also returning the batch size it completed at (smaller than ``batch_size``
    after running out of accelerator memory)."""
    evaluated = [p for p in prompts if p.split in EVALUATED_SPLITS]
    keys = [(p.split, p.index) for p in evaluated]

    def attempt(size: int) -> tuple[np.ndarray, pa.Table]:
        vectors, icl_tokens, *generations = task_vectors_and_icl(
            lm, evaluated, fmt, size, progress=progress, generate=strict
        )
        by_key = dict(zip(keys, vectors))
        table = evaluate_task(
            lm, prompts, by_key, fmt, size, progress, scoring=scoring, icl=dict(zip(keys, icl_tokens.tolist()))
        )
        if strict:
            table = add_strict_scores(
                lm, prompts, by_key, table, fmt, size, progress, icl_generations=dict(zip(keys, generations[0]))
            )
        return vectors, table

    (vectors, table), used = with_batch_backoff(attempt, batch_size, "a task's extraction and evaluation")
    return evaluated, vectors, table, used


def run_task_file(
    task_file: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    model_name: str,
    fmt: PromptFormat,
    sizes: SplitSizes,
    seeds: Sequence[int],
    prompts_out: Sequence[str | os.PathLike[str]],
    activations_out: Sequence[str | os.PathLike[str]],
    results_out: Sequence[str | os.PathLike[str]],
    compute: Compute = DEFAULT_COMPUTE,
) -> list[TaskScores]:
    """For each split seed: sample the prompts of a built task for a model (``model_name``: the study's
    name for it), extract their task vectors, evaluate every method, and write the prompts,
    activations and results files (one of each per seed) with the same metadata as `make-prompts`,
    `extract` and `evaluate` write.

    Every seed is computed before any file is written, so a failure leaves no file of this call. After
    running out of accelerator memory, later seeds keep the smaller batch size; the batch size each
    seed ran at is recorded in its files' metadata (on a GPU in bfloat16 it can change predictions)."""
    if not len(seeds) == len(prompts_out) == len(activations_out) == len(results_out):
        raise ValueError(
            f"give one prompts, activations and results file per seed ({len(seeds)} seeds: "
            f"{len(prompts_out)}, {len(activations_out)} and {len(results_out)} files)"
        )
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"split seeds must differ, got {list(seeds)}")
    lm = compute.load(model_dir)
    computed = []
    size = compute.batch_size
    for seed in seeds:
        prompts, info = build_prompts(task_file, lm.tokenizer, fmt, sizes, seed, model_name)
        start = time.perf_counter()
        evaluated, vectors, table, size = run_task_backing_off(
            lm, prompts, fmt, size, compute.progress, scoring=info.task.rules.scoring, strict=True
        )
        scores = score(table)
        log.info(
            "%s, split seed %d: baseline %.2f, ICL %.2f, task vector %.2f at layer %d; strict: %.2f, %.2f, "
            "%.2f (%.1f s)",
            info.task.name,
            seed,
            scores.baseline,
            scores.icl,
            scores.tv,
            scores.best_layer,
            scores.baseline_strict,
            scores.icl_strict,
            scores.tv_strict,
            time.perf_counter() - start,
        )
        ran = info.ran(lm, int(vectors.shape[1]), int(vectors.shape[2]), size)
        computed.append((prompts, info, ran, evaluated, vectors, table, scores))
    for (prompts, info, ran, evaluated, vectors, table, _), prompts_path, activations_path, results_path in zip(
        computed, prompts_out, activations_out, results_out
    ):
        write_prompts(prompts, info, prompts_path)
        write_activations(activations_table(evaluated, vectors), activations_path, ran)
        write_results(table, results_path, ran)
    return [entry[-1] for entry in computed]
