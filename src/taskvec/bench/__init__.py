"""Benchmarks of the study's forward passes, against their compute limits and naive references.

Run with ``taskvec bench`` after a study (it reads the converted models and prompt files under
``data/``); it writes ``benchmarks.json`` and ``benchmarks.md``. Every timing is the median of
``repeats`` runs (min and max are kept too); predictions of the fast sweep are checked against the
naive reference before either is timed.

The parts: :mod:`.timing`, :mod:`.flops` (compute limits and floors), :mod:`.workloads` (what is
timed), :mod:`.calibration` (implicit ICL's training step against its read floor) and :mod:`.render`
(benchmarks.md).
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

import torch

from taskvec import store
from taskvec.bench.calibration import calibration_seconds
from taskvec.bench.flops import sweep_plan_over_limit, workload_against_floor, workload_flops
from taskvec.bench.render import GPU_FILE, refresh_markdown
from taskvec.bench.timing import machine
from taskvec.bench.workloads import (
    RANDOM_SHAPES,
    SWEEP_TASK,
    bench_lm,
    bench_model,
    dev_queries,
    gpu_peak_mb,
    one_token_block_seconds,
    oom_backoff_check,
    profile_passes,
    random_model,
    study_job_times,
    workload_lm,
    workload_seconds,
)
from taskvec.compute import Compute
from taskvec.forward.capture import last_token_states
from taskvec.forward.patched import SWEEP_BALANCE_ROWS, patched_sweep, unembedding_blocks
from taskvec.jobs.evaluation import run_task

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
        entry["calibration"] = calibration_seconds(
            model_dir, prompts_dir / task / "sample0.parquet", repeats, device, dtype
        )
        jobs = study_job_times(logs_dir, model)
        entry["study_seconds"] = jobs["job_seconds"]
        entry["study_jobs"] = jobs["jobs"]
        entry["peak_rss_mb"] = max(jobs["peak_rss_mb"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        results["models"][model] = entry
    store.write_json(results, out_dir / "benchmarks.json")
    refresh_markdown(out_dir)
    return results


# What the GPU path aims at: the workload within 3x of its FLOP floor, the layer sweep within 1.25x of
# its compute limit, the extraction hooks adding under 10% to a forward pass.
TARGETS = {"workload_over_floor": 3.0, "sweep_over_limit": 1.25, "extraction_overhead": 0.10}


def targets(entry: dict, lm) -> dict:
    """Each target beside its measured value; for the sweep also the least its pass plan can reach by
    the plan's cost model (:func:`~taskvec.bench.flops.sweep_plan_over_limit`)."""
    n_queries = min(entry["sweep_prompts"], int(min(entry["workload"], key=int)))
    balance = SWEEP_BALANCE_ROWS.get(lm.device.type, SWEEP_BALANCE_ROWS["cuda"])
    measured = {
        "workload_over_floor": min(w["over_floor"] for w in entry["workload"].values()),
        "sweep_over_limit": round(entry["sweep_ratio"] / entry["sweep_limit"], 3),
        "extraction_overhead": entry["extraction_overhead"],
    }
    out = {
        key: {"measured": value, "target": TARGETS[key], "met": value <= TARGETS[key]}
        for key, value in measured.items()
    }
    out["sweep_over_limit"]["plan_flops_over_limit"] = round(
        sweep_plan_over_limit(n_queries, entry["n_layers"], balance, unembedding_blocks(lm)), 3
    )
    return out


def _profiled_passes(lm, prompts_file: Path, batch_size: int) -> dict:
    """One batch of extraction texts (hooked and plain) and one batch's layer sweep."""
    from taskvec.bench.workloads import plain_forward
    from taskvec.extract import task_vectors

    prompts, info, fmt = dev_queries(prompts_file)
    dev = [p for p in prompts if p.split == "dev"][:batch_size]
    texts = [fmt.render(p.demonstrations, d) for p in dev for d in p.dummies][:batch_size]
    queries = [fmt.query.format(x=p.query) for p in dev]
    vectors = task_vectors(lm, dev, fmt, batch_size)
    return {
        "plain forward (extraction texts)": lambda: plain_forward(lm, texts, batch_size),
        "hooked forward (extraction texts)": lambda: last_token_states(lm, texts, batch_size),
        "layer sweep": lambda: patched_sweep(lm, queries, vectors, batch_size=batch_size),
        f"one task's workload ({info.task.name})": lambda: run_task(lm, prompts, fmt, batch_size),
    }


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
    flops = [workload_flops(lm, [path]) for path in prompts_files]
    block_seconds = one_token_block_seconds(lm)
    for size in batch_sizes:
        run_task(lm, *dev_queries(prompts_dir / task / "sample0.parquet")[::2], size)  # warm-up at this size
        rates: list[float] = []
        work = workload_lm(lm, prompts_files, size, rates=rates)
        work.update(workload_against_floor(flops, work["seconds"], rates))
        calls_floor = work["block_calls"] * block_seconds
        work["block_call_ms"] = round(block_seconds * 1000, 4)
        work["block_call_floor_seconds"] = round(calls_floor, 2)
        work["block_call_share"] = round(calls_floor / work["seconds"], 3)
        work["block_calls_over_flop_floor"] = round(calls_floor * work["over_floor"] / work["seconds"], 3)
        entry["workload"][str(size)] = work
        log.info(
            "%s: workload at batch size %d: %.1f s, %.2fx its floor", name, size, work["seconds"], work["over_floor"]
        )
    entry["gpu_peak_mb"] = gpu_peak_mb(lm.device)
    entry["targets"] = targets(entry, lm)
    entry["profile"] = profile_passes(lm, _profiled_passes(lm, prompts_dir / task / "sample0.parquet", batch_sizes[0]))
    probe = prompts_dir / "country_capital" / "sample0.parquet"
    entry["oom_backoff"] = oom_backoff_check(lm, probe if probe.exists() else prompts_files[0], 1024)
    results = {"machine": machine(), "repeats": repeats, "models": {name: entry}}
    store.write_json(results, out / GPU_FILE)
    refresh_markdown(out)
    return results
