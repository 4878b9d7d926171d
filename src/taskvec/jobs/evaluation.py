"""The evaluation job: every method's predictions on a task's bare queries, from the extraction's
files (see :mod:`taskvec.jobs`); and both jobs' work in memory (:func:`run_task`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from taskvec.compute import DEFAULT_COMPUTE, Compute
from taskvec.errors import ConfigError
from taskvec.evaluate import TaskScores, add_strict_scores, evaluate_task, score, write_results
from taskvec.extract import IclOutputs, read_activations, read_icl
from taskvec.forward.batching import with_batch_backoff
from taskvec.jobs.extraction import PathLike, extract_prompts
from taskvec.loader import match_runs
from taskvec.models import LoadedModel
from taskvec.prompts import Prompt, PromptFormat, RunInfo, read_prompts

log = logging.getLogger(__name__)


def evaluate_prompts(
    lm: LoadedModel,
    prompts: Sequence[Prompt],
    vectors: dict[tuple[str, int], np.ndarray],
    icl: IclOutputs,
    fmt: PromptFormat,
    batch_size: int,
    progress: bool = False,
    scoring: str = "exact",
    strict: bool = True,
) -> pa.Table:
    """Every method's predictions (:func:`taskvec.evaluate.evaluate_task`) from the extraction's theta
    and ICL outputs; with ``strict``, scored by the strict metric too."""
    table = evaluate_task(lm, prompts, vectors, fmt, batch_size, progress, scoring=scoring, icl=icl.tokens)
    if not strict:
        return table
    return add_strict_scores(lm, prompts, vectors, table, fmt, batch_size, progress, icl_generations=icl.generations)


def run_task(
    lm: LoadedModel,
    prompts: Sequence[Prompt],
    fmt: PromptFormat,
    batch_size: int = 16,
    progress: bool = False,
    scoring: str = "exact",
    strict: bool = False,
) -> tuple[list[Prompt], np.ndarray, pa.Table]:
    """Both jobs' work on one sampling, in memory (what one (model, task, seed) of the study computes,
    the strict metric with ``strict``): the dev and test prompts, their theta and the results table."""
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
    """:func:`run_task`, also returning the batch size the evaluation completed at: out of accelerator
    memory, each job's part starts again at half the batch size."""
    (evaluated, vectors, icl), size = with_batch_backoff(
        lambda size: extract_prompts(lm, prompts, fmt, size, progress, generate=strict),
        batch_size,
        "a task's extraction",
    )
    by_key = dict(zip([(p.split, p.index) for p in evaluated], vectors))
    table, size = with_batch_backoff(
        lambda size: evaluate_prompts(lm, prompts, by_key, icl, fmt, size, progress, scoring, strict),
        size,
        "a task's evaluation",
    )
    return evaluated, vectors, table, size


def _evaluate(
    lm: LoadedModel,
    prompts: list[Prompt],
    info: RunInfo,
    vectors: dict[tuple[str, int], np.ndarray],
    icl: IclOutputs,
    size: int,
    compute: Compute,
) -> tuple[pa.Table, TaskScores, int]:
    start = time.perf_counter()
    table, size = with_batch_backoff(
        lambda size: evaluate_prompts(
            lm, prompts, vectors, icl, info.format, size, compute.progress, info.task.rules.scoring
        ),
        size,
        "a task's evaluation",
    )
    scores = score(table)
    log.info(
        "%s, split seed %d: baseline %.2f, ICL %.2f, task vector %.2f at layer %d; strict: %.2f, %.2f, %.2f (%.1f s)",
        info.task.name,
        info.seed,
        scores.baseline,
        scores.icl,
        scores.tv,
        scores.best_layer,
        scores.baseline_strict,
        scores.icl_strict,
        scores.tv_strict,
        time.perf_counter() - start,
    )
    return table, scores, size


def evaluate_files(
    model_dir: PathLike,
    prompts_files: Sequence[PathLike],
    activations_files: Sequence[PathLike],
    icl_files: Sequence[PathLike],
    results_out: Sequence[PathLike],
    compute: Compute = DEFAULT_COMPUTE,
) -> list[TaskScores]:
    """The evaluation job: for each prompts file, the activations and ICL files made from it (found
    by their metadata: model, task and split seed, :func:`taskvec.loader.match_runs`), every method's
    predictions on the bare queries, written to the results file at the same position as the prompts
    file. Every file is computed
    before any is written."""
    if len(prompts_files) != len(results_out):
        raise ConfigError(
            f"give one results file per prompts file ({len(prompts_files)} prompts, {len(results_out)} results)"
        )
    runs = match_runs({"prompts": prompts_files, "activations": activations_files, "icl": icl_files})
    lm = compute.load(model_dir)
    computed, size = [], compute.batch_size
    for run in runs:
        prompts, info = read_prompts(run.prompts)
        vectors, act_info = read_activations(run.activations)
        outputs, _ = read_icl(run.icl)
        table, scores, size = _evaluate(lm, prompts, info, vectors, outputs, size, compute)
        computed.append((table, info.ran(lm, act_info.n_layers, act_info.hidden_size, size), scores))
    for (table, ran, _), out in zip(computed, results_out):
        write_results(table, out, ran)
    return [scores for _, _, scores in computed]
