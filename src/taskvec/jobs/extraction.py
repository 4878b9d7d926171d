"""The extraction job: a task's prompts, theta and ICL outputs for every split seed (see
:mod:`taskvec.jobs`)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import numpy as np

from taskvec.compute import DEFAULT_COMPUTE, Compute
from taskvec.errors import ConfigError
from taskvec.extract import (
    EVALUATED_SPLITS,
    IclOutputs,
    activations_table,
    icl_table,
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
        raise ConfigError(
            f"give one prompts, activations and ICL file per seed ({len(seeds)} seeds: "
            f"{len(prompts_out)}, {len(activations_out)} and {len(icl_out)} files)"
        )
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"split seeds must differ, got {list(seeds)}")
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
