"""Benchmarks of the study's forward passes, against their compute limits and naive references.

Run with ``taskvec bench`` after a study (it reads the converted models and prompt files under
``data/``); it writes ``benchmarks.json`` and ``benchmarks.md``. Every timing is the median of
``repeats`` runs (min and max are kept too); predictions of the fast sweep are checked against the
naive reference before either is timed.

The parts: :mod:`.timing`, :mod:`.flops` (compute limits and floors), :mod:`.workloads` (what is
timed) and :mod:`.render` (benchmarks.md).
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

import torch

from taskvec import store
from taskvec.bench.render import GPU_FILE, refresh_markdown
from taskvec.bench.timing import machine
from taskvec.bench.workloads import (
    RANDOM_SHAPES,
    SWEEP_TASK,
    _dev_queries,
    _gpu_peak_mb,
    bench_lm,
    bench_model,
    oom_backoff_check,
    random_model,
    study_job_times,
    workload_lm,
    workload_seconds,
)
from taskvec.compute import Compute
from taskvec.run import run_task

log = logging.getLogger(__name__)


BENCH_COMPUTE = Compute(batch_size=64)


def run_benchmarks(
    models: list[str],
    data_dir: Path,
    logs_dir: Path,
    out_dir: Path,
    compute: Compute = BENCH_COMPUTE,
    repeats: int = 5,
    workload: bool = True,
    task: str = SWEEP_TASK,
    compare_dtype: str | None = None,
) -> dict:
    batch_size, device, dtype = compute.batch_size, compute.device, compute.dtype
    if compute.threads:
        torch.set_num_threads(compute.threads)
    results = {"machine": machine(), "repeats": repeats, "batch_size": batch_size, "models": {}}
    for model in models:
        model_dir, prompts_dir = data_dir / "models" / model, data_dir / "prompts" / model
        if not (prompts_dir / task / "sample0.parquet").exists():
            raise FileNotFoundError(
                f"{prompts_dir / task / 'sample0.parquet'} is missing: run the study first (make reproduce)"
            )
        entry = bench_model(model_dir, prompts_dir, repeats, batch_size, device, dtype, task)
        if workload:
            entry["workload"] = workload_seconds(model_dir, prompts_dir, batch_size, device, dtype, compare_dtype)
        jobs = study_job_times(logs_dir, model)
        entry["study_seconds"] = jobs["job_seconds"]
        entry["study_jobs"] = jobs["jobs"]
        entry["peak_rss_mb"] = max(jobs["peak_rss_mb"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        results["models"][model] = entry
    store.write_json(results, out_dir / "benchmarks.json")
    refresh_markdown(out_dir)
    return results


def run_random_benchmark(
    shape: str,
    tokenizer_dir: Path,
    prompts_dir: Path,
    out: Path,
    repeats: int = 5,
    batch_sizes: tuple[int, ...] = (64, 256),
    device: str = "auto",
    dtype: str = "auto",
    task: str = SWEEP_TASK,
) -> dict:
    """The benchmark on a random-weight model of a real shape: sweep and extraction against their limits,
    the 18-task workload at each batch size, peak GPU memory, and the out-of-memory back-off."""
    lm = random_model(shape, tokenizer_dir, device, dtype)
    name = f"random {shape}"
    log.info("%s: %.2fB parameters, %s on %s", name, lm.provenance["parameters"] / 1e9, lm.dtype_name, lm.device)
    prompts_files = sorted(prompts_dir.glob("*/sample0.parquet"))
    if not prompts_files:
        raise FileNotFoundError(f"no prompts files under {prompts_dir}/*/sample0.parquet: run the study first")
    entry = {
        "shape": shape,
        "config": RANDOM_SHAPES[shape],
        "parameters": lm.provenance["parameters"],
        "vocab_size": len(lm.tokenizer),
        "dtype": lm.dtype_name,
        "device": str(lm.device),
    }
    entry.update(
        bench_lm(lm, name, prompts_dir / task / "sample0.parquet", repeats, batch_sizes[0], require_identical=False)
    )
    entry["workload"] = {}
    for size in batch_sizes:
        run_task(lm, *_dev_queries(prompts_dir / task / "sample0.parquet")[::2], size)  # warm-up at this size
        entry["workload"][str(size)] = workload_lm(lm, prompts_files, size)
        log.info("%s: 18-task workload at batch size %d: %.1f s", name, size, entry["workload"][str(size)]["seconds"])
    entry["gpu_peak_mb"] = _gpu_peak_mb(lm.device)
    probe = prompts_dir / "country_capital" / "sample0.parquet"
    entry["oom_backoff"] = oom_backoff_check(lm, probe if probe.exists() else prompts_files[0], 1024)
    results = {"machine": machine(), "repeats": repeats, "models": {name: entry}}
    store.write_json(results, out / GPU_FILE)
    refresh_markdown(out)
    return results
