"""The study's two jobs per (model, task), each one process for all the task's split seeds:

- extraction (:func:`extract_task_file`): everything that runs the demonstrations. It samples the
  prompts for the model's tokenizer, computes theta at every layer for the dev and test prompts, and
  runs the ICL prompt as one more suffix on the demonstrations that theta comes from (its prediction
  and its greedy generation for the strict metric). Writes the prompts, activations and ICL files.
- evaluation (:func:`evaluate_files`): the bare queries only, reading the extraction's files: the
  baseline, the layer sweep on dev, the task vector on test at the layer chosen on dev, and the strict
  generations. Writes the results files.

Each step's code inputs are what its command runs (:mod:`taskvec.codedeps`), so a change to the
scoring or patching code reruns evaluation and no extraction. By hand, `taskvec make-prompts`,
`taskvec extract` and `taskvec evaluate` run the same functions on one file of each.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from taskvec.compute import DEFAULT_COMPUTE, Compute
from taskvec.errors import ArtifactError
from taskvec.evaluate import TaskScores, add_strict_scores, evaluate_task, score, write_results
from taskvec.extract import (
    EVALUATED_SPLITS,
    IclOutputs,
    activations_table,
    icl_table,
    read_activations,
    read_icl,
    task_vectors_and_icl,
    write_activations,
    write_icl,
)
from taskvec.forward.batching import with_batch_backoff
from taskvec.models import LoadedModel
from taskvec.prompts import Prompt, PromptFormat, RunInfo, SplitSizes, build_prompts, read_prompts, write_prompts

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def extract_prompts(
    lm: LoadedModel,
    prompts: Sequence[Prompt],
    fmt: PromptFormat,
    batch_size: int,
    progress: bool = False,
    generate: bool = True,
) -> tuple[list[Prompt], np.ndarray, IclOutputs]:
    """The dev and test prompts, their theta (``[n, n_layers, hidden]``, in that order) and their ICL
    outputs: the prediction and, with ``generate``, the strict metric's generation."""
    evaluated = [p for p in prompts if p.split in EVALUATED_SPLITS]
    keys = [(p.split, p.index) for p in evaluated]
    vectors, tokens, *generations = task_vectors_and_icl(
        lm, evaluated, fmt, batch_size, progress=progress, generate=generate
    )
    generated = dict(zip(keys, generations[0])) if generate else {}
    return evaluated, vectors, IclOutputs(dict(zip(keys, tokens.tolist())), generated)


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


def _write_extraction(
    lm: LoadedModel,
    computed: tuple[list[Prompt], RunInfo, list[Prompt], np.ndarray, IclOutputs, int],
    prompts_out: PathLike | None,
    activations_out: PathLike,
    icl_out: PathLike,
) -> None:
    prompts, info, evaluated, vectors, icl, size = computed
    ran = info.ran(lm, int(vectors.shape[1]), int(vectors.shape[2]), size)
    if prompts_out is not None:
        write_prompts(prompts, info, prompts_out)
    write_activations(activations_table(evaluated, vectors), activations_out, ran)
    keys = [(p.split, p.index) for p in evaluated]
    write_icl(icl_table(evaluated, [icl.tokens[k] for k in keys], [icl.generations[k] for k in keys]), icl_out, ran)


def _extract(lm: LoadedModel, prompts: list[Prompt], info: RunInfo, size: int, compute: Compute):
    start = time.perf_counter()
    (evaluated, vectors, icl), size = with_batch_backoff(
        lambda size: extract_prompts(lm, prompts, info.format, size, compute.progress), size, "a task's extraction"
    )
    log.info(
        "%s, split seed %d: extracted theta of %d prompts and their ICL outputs (%.1f s)",
        info.task.name,
        info.seed,
        len(evaluated),
        time.perf_counter() - start,
    )
    return prompts, info, evaluated, vectors, icl, size


def extract_task_file(
    task_file: PathLike,
    model_dir: PathLike,
    model_name: str,
    fmt: PromptFormat,
    sizes: SplitSizes,
    seeds: Sequence[int],
    prompts_out: Sequence[PathLike],
    activations_out: Sequence[PathLike],
    icl_out: Sequence[PathLike],
    compute: Compute = DEFAULT_COMPUTE,
) -> None:
    """The extraction job: for each split seed, sample the prompts of a built task for a model
    (``model_name``: the study's name for it), extract theta and the ICL outputs, and write the
    prompts, activations and ICL files (one of each per seed).

    Every seed is computed before any file is written, so a failure leaves no file of this call. After
    running out of accelerator memory, later seeds keep the smaller batch size; the batch size each
    seed ran at is recorded in its files' metadata (on a GPU in bfloat16 it can change predictions)."""
    if not len(seeds) == len(prompts_out) == len(activations_out) == len(icl_out):
        raise ValueError(
            f"give one prompts, activations and ICL file per seed ({len(seeds)} seeds: "
            f"{len(prompts_out)}, {len(activations_out)} and {len(icl_out)} files)"
        )
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"split seeds must differ, got {list(seeds)}")
    lm = compute.load(model_dir)
    computed, size = [], compute.batch_size
    for seed in seeds:
        prompts, info = build_prompts(task_file, lm.tokenizer, fmt, sizes, seed, model_name)
        entry = _extract(lm, prompts, info, size, compute)
        size = entry[-1]
        computed.append(entry)
    for entry, prompts_path, activations_path, icl_path in zip(computed, prompts_out, activations_out, icl_out):
        _write_extraction(lm, entry, prompts_path, activations_path, icl_path)


def extract_prompt_file(
    model_dir: PathLike, prompts_file: PathLike, activations_out: PathLike, icl_out: PathLike, compute: Compute
) -> None:
    """The extraction of one prompts file (`taskvec extract`), by the same functions as the study's
    job and with the same metadata."""
    prompts, info = read_prompts(prompts_file)
    lm = compute.load(model_dir)
    entry = _extract(lm, prompts, info, compute.batch_size, compute)
    _write_extraction(lm, entry, None, activations_out, icl_out)


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


def _extraction_of(info: RunInfo, path: PathLike, candidates: dict[PathLike, RunInfo], kind: str) -> PathLike:
    """The one file among ``candidates`` made from the prompts that ``info`` describes (same model,
    task and split seed), or an error naming the files."""
    key = (info.model_name, info.task.name, info.seed)
    found = [c for c, other in candidates.items() if (other.model_name, other.task.name, other.seed) == key]
    if len(found) != 1:
        given = ", ".join(f"{c} ({o.model_name}, {o.task.name}, seed {o.seed})" for c, o in candidates.items())
        raise ArtifactError(
            f"{path} holds the prompts of {info.task.name} (split seed {info.seed}) on {info.model_name}; "
            f"{'no' if not found else len(found)} {kind} file{'s' if len(found) > 1 else ''} of those prompts "
            f"among: {given}",
            fix=f"give the {kind} files that `taskvec extract` made from these prompts files, one each",
        )
    return found[0]


def evaluate_files(
    model_dir: PathLike,
    prompts_files: Sequence[PathLike],
    activations_files: Sequence[PathLike],
    icl_files: Sequence[PathLike],
    results_out: Sequence[PathLike],
    compute: Compute = DEFAULT_COMPUTE,
) -> list[TaskScores]:
    """The evaluation job: for each prompts file, the activations and ICL files made from it (found
    by their metadata: model, task and split seed), every method's predictions on the bare queries,
    written to the results file at the same position as the prompts file. Every file is computed
    before any is written."""
    if len(prompts_files) != len(results_out):
        raise ValueError(
            f"give one results file per prompts file ({len(prompts_files)} prompts, {len(results_out)} results)"
        )
    read = [read_prompts(path) for path in prompts_files]
    activations = {path: read_activations(path) for path in activations_files}
    icl = {path: read_icl(path) for path in icl_files}
    lm = compute.load(model_dir)
    computed, size = [], compute.batch_size
    for (prompts, info), path in zip(read, prompts_files):
        vectors, act_info = activations[
            _extraction_of(info, path, {p: a[1] for p, a in activations.items()}, "activations")
        ]
        outputs, _ = icl[_extraction_of(info, path, {p: i[1] for p, i in icl.items()}, "ICL")]
        table, scores, size = _evaluate(lm, prompts, info, vectors, outputs, size, compute)
        computed.append((table, info.ran(lm, act_info.n_layers, act_info.hidden_size, size), scores))
    for (table, ran, _), out in zip(computed, results_out):
        write_results(table, out, ran)
    return [scores for _, _, scores in computed]
