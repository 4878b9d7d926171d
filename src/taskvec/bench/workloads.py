"""What is timed: the layer sweep against its naive reference, extraction against a plain forward,
each model's whole workload (and in another dtype), a random-weight model of a real shape, and the
out-of-memory back-off."""

from __future__ import annotations

import csv
import gc
import logging
import time
from pathlib import Path

import numpy as np
import torch

from taskvec.architectures import describe
from taskvec.bench.flops import (
    matmul_rate,
    parameter_count,
    sweep_limit,
    sweep_prefix_share,
    workload_against_floor,
    workload_flops,
)
from taskvec.bench.timing import synchronize, timed, timed_together
from taskvec.errors import ConfigError
from taskvec.extract import task_vectors
from taskvec.forward.batching import batches, encode
from taskvec.forward.capture import last_token_states
from taskvec.forward.patched import patched_sweep, patched_sweep_naive
from taskvec.forward.readout import next_tokens
from taskvec.jobs.evaluation import run_task, run_task_backing_off
from taskvec.models import LoadedModel, load_model
from taskvec.prompts import read_prompts

SWEEP_TASK = "next_letter"  # one-letter queries: the sweep's limit is about 5 forwards on smollm2-135m

log = logging.getLogger(__name__)


def dev_queries(prompts_file: Path):
    prompts, info = read_prompts(prompts_file)
    return prompts, info, info.format


def bench_model(
    model_dir: Path, prompts_dir: Path, repeats: int, batch_size: int, device: str, dtype: str, task: str = SWEEP_TASK
) -> dict:
    lm = load_model(model_dir, device=device, dtype=dtype)
    # In bfloat16 (the default on a GPU) rounding differs between the two paths' kernels.
    return bench_lm(
        lm,
        model_dir.name,
        prompts_dir / task / "sample0.parquet",
        repeats,
        batch_size,
        require_identical=lm.model.dtype == torch.float32,
    )


def bench_lm(
    lm: LoadedModel, name: str, prompts_file: Path, repeats: int, batch_size: int, require_identical: bool = True
) -> dict:
    """Sweep, naive reference and extraction timings of one loaded model on one task's dev prompts.

    With ``require_identical`` (the packaged models in float32) a disagreement between the fast sweep
    and the naive reference stops the benchmark; otherwise (random weights in bfloat16, where ties and
    rounding differ between kernels) the share of agreeing predictions is recorded.
    """
    prompts, metadata, fmt = dev_queries(prompts_file)
    task = metadata.task.name
    dev = [p for p in prompts if p.split == "dev"]
    queries = [fmt.query.format(x=p.query) for p in dev]
    vectors = task_vectors(lm, dev, fmt, batch_size)

    log.info("%s: checking the fast sweep against the naive reference on %d %s dev prompts", name, len(dev), task)
    fast = patched_sweep(lm, queries, vectors, batch_size=batch_size)
    naive = patched_sweep_naive(lm, queries, vectors, batch_size=batch_size)
    agreement = float(np.mean(fast == naive))
    if require_identical and agreement < 1:
        raise RuntimeError(f"{name}: the fast sweep and the naive reference disagree; not timing them")

    log.info("%s: timing the sweep, the naive reference and extraction (%d runs each)", name, repeats)
    sweeps = timed_together(
        {
            "forward": lambda: next_tokens(lm, queries, batch_size),
            "sweep": lambda: patched_sweep(lm, queries, vectors, batch_size=batch_size),
            "naive": lambda: patched_sweep_naive(lm, queries, vectors, batch_size=batch_size),
        },
        repeats,
        lm.device,
    )
    forward_t, sweep_t, naive_t = sweeps["forward"], sweeps["sweep"], sweeps["naive"]
    token_counts = [len(lm.tokenizer.encode(q)) for q in queries]
    limit, prefix_share = sweep_limit(lm, token_counts), sweep_prefix_share(lm, token_counts)

    texts = [fmt.render(p.demonstrations, d) for p in dev for d in p.dummies]
    passes = timed_together(
        {
            "plain": lambda: plain_forward(lm, texts, batch_size),
            "hooked": lambda: last_token_states(lm, texts, batch_size),
        },
        repeats,
        lm.device,
    )
    plain_t, hooked_t = passes["plain"], passes["hooked"]
    extract_t = timed(lambda: task_vectors(lm, dev, fmt, batch_size), repeats, lm.device)

    return {
        "n_layers": describe(lm.model).n_layers,
        "sweep_task": task,
        "sweep_prompts": len(dev),
        "sweep_agreement": agreement,
        "sweep_ratio": round(sweep_t.median / forward_t.median, 3),
        "sweep_limit": round(limit, 3),
        "naive_ratio": round(naive_t.median / forward_t.median, 3),
        "naive_speedup": round(naive_t.median / sweep_t.median, 3),
        "sweep_prefix_share": round(prefix_share, 3),
        # The naive reference does one whole forward per layer: at equal efficiency, a sweep doing only its
        # least work (the limit, plus the queries' prefixes once) would beat it by this much and no more.
        "naive_speedup_at_limit": round(describe(lm.model).n_layers / (limit + prefix_share), 3),
        "extraction_overhead": round(hooked_t.median / plain_t.median - 1, 4),
        "extraction_prompts_per_second": round(len(dev) / extract_t.median, 2),
        "shared_prefix_speedup": round(hooked_t.median / extract_t.median, 3),
        "timings_seconds": {
            "unpatched_forward": forward_t.as_dict(),
            "fast_sweep": sweep_t.as_dict(),
            "naive_sweep": naive_t.as_dict(),
            "plain_forward_extraction_texts": plain_t.as_dict(),
            "hooked_forward_extraction_texts": hooked_t.as_dict(),
            "extraction_shared_prefix": extract_t.as_dict(),
        },
    }


@torch.inference_mode()
def plain_forward(lm: LoadedModel, texts: list[str], batch_size: int) -> None:
    """The passes :func:`last_token_states` makes, without its hooks."""
    for rows in batches(texts, batch_size):
        lm.model.base_model(**encode(lm, [texts[i] for i in rows]).inputs(), use_cache=False)


def workload_seconds(
    model_dir: Path, prompts_dir: Path, batch_size: int, device: str, dtype: str, compare_dtype: str | None = None
) -> dict:
    """The study's compute for one model, model load excluded: extraction and evaluation of every
    task whose prompts file exists (what the paper's own code times as its main experiment), beside
    its compute floor; with ``compare_dtype``, the same workload in that dtype and how its predictions
    differ."""
    files = sorted(prompts_dir.glob("*/sample0.parquet"))
    lm = load_model(model_dir, device=device, dtype=dtype)
    tables: dict = {}
    rates: list[float] = []
    entry = workload_lm(lm, files, batch_size, tables, rates)
    entry["dtype"] = lm.dtype_name
    flops = [workload_flops(lm, [path]) for path in files]
    entry.update(workload_against_floor(flops, entry["seconds"], rates))
    if compare_dtype and compare_dtype != lm.dtype_name:
        del lm
        gc.collect()
        other = load_model(model_dir, device=device, dtype=compare_dtype)
        other_tables: dict = {}
        other_rates: list[float] = []
        alternative = workload_lm(other, files, batch_size, other_tables, other_rates)
        alternative.update(dtype=other.dtype_name, **workload_against_floor(flops, alternative["seconds"], other_rates))
        alternative.update(dtype_agreement(tables, other_tables))
        entry["alternative_dtype"] = alternative
    return entry


def study_job_times(logs_dir: Path, model: str) -> dict:
    """Wall time and peak memory of the model's jobs in the last default study (its steps, not the
    extended studies'), from Snakemake's benchmark files (``logs/benchmarks/<rule>/<model>[/<task>].tsv``)."""
    from taskvec.workflow.contract import STUDY_STEPS

    seconds, peak_mb, jobs = 0.0, 0.0, 0
    paths = [
        p
        for step in STUDY_STEPS
        for p in (logs_dir / step / f"{model}.tsv", *sorted((logs_dir / step / model).glob("*.tsv")))
    ]
    for path in (p for p in paths if p.is_file()):
        with path.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        seconds += float(row["s"])
        peak_mb = max(peak_mb, float(row["max_rss"]) if row["max_rss"] not in ("", "NA", "-") else 0.0)
        jobs += 1
    return {"jobs": jobs, "job_seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb, 1)}


RANDOM_SHAPES = {
    "llama-7b": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
    },
    "tiny-llama": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
    },
}


def random_model(shape: str, tokenizer_dir: Path, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """A Llama model of ``shape`` with random weights (seed 0), using the tokenizer in ``tokenizer_dir``
    (its vocabulary sets the embedding size), built directly on the device."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from taskvec.models import pick_device, pick_dtype

    if shape not in RANDOM_SHAPES:
        raise ConfigError(f"unknown shape {shape!r}; choose one of {sorted(RANDOM_SHAPES)}")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        tie_word_embeddings=False,
        **RANDOM_SHAPES[shape],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    with torch.device(torch_device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype).eval()
    return LoadedModel(
        model,
        tokenizer,
        torch_device,
        {"source": f"random weights, {shape} shape", "parameters": parameter_count(model)},
    )


def gpu_peak_mb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def workload_lm(
    lm: LoadedModel, prompts_files: list[Path], batch_size: int, tables: dict | None = None, rates: list | None = None
) -> dict:
    """Extraction and evaluation of every task in ``prompts_files`` (the study's work for one seed).
    The results table of each task goes into ``tables`` (by task) when it is given; with ``rates``,
    the machine's matrix rate (:func:`matmul_rate`) is sampled after each task, untimed, so that a
    floor can be set for the conditions each task ran in."""
    per_task, prompts_done = {}, 0
    counter = _BlockCalls(lm)
    for prompts_file in prompts_files:
        prompts, metadata, fmt = dev_queries(prompts_file)
        synchronize(lm.device)
        start = time.perf_counter()
        with counter:
            evaluated, _, table = run_task(lm, prompts, fmt, batch_size, scoring=metadata.task.rules.scoring)
            synchronize(lm.device)
        task = metadata.task.name
        per_task[task] = round(time.perf_counter() - start, 3)
        prompts_done += len(evaluated)
        if tables is not None:
            tables[task] = table
        if rates is not None:
            rates.append(matmul_rate(lm, repeats=3))
        log.info("workload of %s took %.1f s", task, per_task[task])
    seconds = sum(per_task.values())
    return {
        "tasks": len(per_task),
        "batch_size": batch_size,
        "seconds": round(seconds, 2),
        "evaluated_prompts_per_second": round(prompts_done / seconds, 1),
        "per_task": per_task,
        "block_calls": counter.calls,
    }


class _BlockCalls:
    """Counts the calls of every block while active: each call runs one block over one batch, so
    reads that block's weights once however few rows it has."""

    def __init__(self, lm: LoadedModel) -> None:
        self.layers, self.calls, self.handles = describe(lm.model).layers, 0, []

    def _count(self, module, args) -> None:
        self.calls += 1

    def __enter__(self) -> _BlockCalls:
        self.handles = [layer.register_forward_pre_hook(self._count) for layer in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()


@torch.inference_mode()
def one_token_block_seconds(lm: LoadedModel, repeats: int = 20) -> float:
    """A one-token forward's time over the number of blocks: what one block call costs when its rows
    do not matter (reading the block's weights and launching its kernels), the least any block call
    takes on this device."""
    ids = torch.tensor([[lm.pad_token_id]], device=lm.device)
    run = lambda: lm.model.base_model(input_ids=ids, use_cache=False)  # noqa: E731
    run()
    return timed(run, repeats, lm.device).median / len(describe(lm.model).layers)


def dtype_agreement(reference: dict, other: dict) -> dict:
    """How far another dtype's predictions are from the reference's: the share of identical predicted
    tokens over every row of every task, and the largest change of a task's ICL and task-vector accuracy."""
    from taskvec.evaluate import score

    same = total = 0
    icl_change = tv_change = 0.0
    for task, table in reference.items():
        a, b = table.column("token_id").to_numpy(), other[task].column("token_id").to_numpy()
        same += int((a == b).sum())
        total += len(a)
        sa, sb = score(table), score(other[task])
        icl_change = max(icl_change, abs(sa.icl - sb.icl))
        tv_change = max(tv_change, abs(sa.tv - sb.tv))
    return {
        "same_predictions": round(same / total, 4),
        "max_icl_accuracy_change": round(icl_change, 3),
        "max_tv_accuracy_change": round(tv_change, 3),
    }


class _WarningCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def oom_backoff_check(
    lm: LoadedModel, prompts_file: Path, batch_size: int, headrooms_gb: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)
) -> dict:
    """Fill the GPU's memory but ``headroom`` GB, run one task at ``batch_size``, and record whether the
    batch size backed off, what it ended at, and whether the results equal those of the same task run
    with room to spare at that final batch size. Tries smaller headrooms until memory runs out."""
    if lm.device.type != "cuda":
        return {"checked": False, "why": "not on a GPU"}
    prompts, metadata, fmt = dev_queries(prompts_file)
    handler = _WarningCounter()
    forward_log = logging.getLogger("taskvec.forward")
    forward_log.addHandler(handler)
    outcome: dict = {"checked": True, "task": metadata.task.name, "start_batch_size": batch_size}
    try:
        for headroom in headrooms_gb:
            handler.messages.clear()
            gc.collect()
            torch.cuda.empty_cache()
            free, _ = torch.cuda.mem_get_info(lm.device)
            ballast = torch.empty(max(0, free - int(headroom * 2**30)), dtype=torch.uint8, device=lm.device)
            try:
                _, _, table, used = run_task_backing_off(
                    lm, prompts, fmt, batch_size, scoring=metadata.task.rules.scoring
                )
                outcome.update(
                    headroom_gb=headroom,
                    completed=True,
                    backoffs=list(handler.messages),
                    final_batch_size=used,
                    results=table,
                )
            except MemoryError as error:
                outcome.update(
                    headroom_gb=headroom, completed=False, backoffs=list(handler.messages), message=str(error)[:400]
                )
            finally:
                del ballast
            if outcome["backoffs"] or not outcome["completed"]:
                break
    finally:
        forward_log.removeHandler(handler)
        gc.collect()
        torch.cuda.empty_cache()
    if outcome.get("completed"):
        _, _, reference = run_task(lm, prompts, fmt, outcome["final_batch_size"], scoring=metadata.task.rules.scoring)
        outcome["same_results"] = outcome.pop("results").equals(reference)
    return outcome


def profile_passes(lm: LoadedModel, runs: dict, top: int = 8) -> dict:
    """The operators that take the most time in each of ``runs`` (name -> callable), by torch's
    profiler: self time on the GPU where there is one, else on the CPU. It says where the time of a
    pass goes (for example what the extraction hooks add) for the next round of optimisation."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    on_gpu = lm.device.type == "cuda"
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if on_gpu else [ProfilerActivity.CPU]
    out = {}
    for name, run in runs.items():
        run()  # warm-up outside the profile
        synchronize(lm.device)
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            run()
            synchronize(lm.device)
            wall = time.perf_counter() - start
        events = prof.key_averages()

        def self_us(event) -> float:
            return float(event.self_device_time_total if on_gpu else event.self_cpu_time_total)

        # On the GPU both an operator and the kernels it launched carry the kernels' time: the total
        # is the kernels' (and copies') time, and the ranking is by operator, each with its kernels'.
        ops = [e for e in events if e.device_type == DeviceType.CPU]
        timed_events = [e for e in events if e.device_type != DeviceType.CPU] if on_gpu else ops
        total = sum(self_us(e) for e in timed_events) or 1.0
        ranked = sorted(ops, key=self_us, reverse=True)[:top]
        out[name] = {
            "clock": "GPU" if on_gpu else "CPU",
            "total_ms": round(total / 1000, 2),
            "wall_ms": round(wall * 1000, 2),
            "top": [
                {
                    "op": e.key,
                    "calls": int(e.count),
                    "ms": round(self_us(e) / 1000, 2),
                    "share": round(self_us(e) / total, 3),
                }
                for e in ranked
            ],
        }
    return out
