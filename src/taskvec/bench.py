"""Benchmarks of the study's forward passes, against their compute limits and naive references.

Run with ``taskvec bench`` after a study (it reads the converted models and prompt files under
``data/``); it writes ``benchmarks.json`` and ``benchmarks.md``. Every timing is the median of
``repeats`` runs (min and max are kept too); predictions of the fast sweep are checked against the
naive reference before either is timed.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import json
import logging
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from taskvec import store
from taskvec.architectures import describe
from taskvec.compute import Compute
from taskvec.extract import task_vectors
from taskvec.forward import (
    batches,
    encode,
    last_token_states,
    next_tokens,
    patched_sweep,
    patched_sweep_naive,
)
from taskvec.models import LoadedModel, load_model
from taskvec.prompts import read_prompts
from taskvec.run import run_task, run_task_backing_off

log = logging.getLogger(__name__)

SWEEP_TASK = "next_letter"  # one-letter queries: the sweep's limit is about 5 forwards on smollm2-135m


@dataclasses.dataclass(frozen=True)
class Timing:
    median: float
    min: float
    max: float
    runs: int

    def as_dict(self) -> dict:
        return {
            "median": round(self.median, 4),
            "min": round(self.min, 4),
            "max": round(self.max, 4),
            "runs": self.runs,
        }


def timed(fn: Callable[[], object], repeats: int, device: torch.device | None = None) -> Timing:
    return timed_together({"only": fn}, repeats, device)["only"]


def _synchronize(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_together(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device | None = None
) -> dict[str, Timing]:
    """Time functions that are compared with each other in alternation (a, b, a, b, ...), so that a
    slow phase of the machine (another process, frequency changes) falls on both alike. On a GPU the
    device is synchronised before each clock reading."""
    for fn in fns.values():
        fn()  # warm-up: allocator, thread pool, lazy initialisation, kernel selection
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _synchronize(device)
            start = time.perf_counter()
            fn()
            _synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: Timing(statistics.median(t), min(t), max(t), repeats) for name, t in times.items()}


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _flop_costs(lm: LoadedModel) -> tuple[float, float, int]:
    """FLOPs of one token through one block and of one unembedding, and the number of blocks: a weight
    does one multiply-add per token, so 2 x parameters (attention scores over these short prompts are
    negligible and left out)."""
    arch = describe(lm.model)
    per_block = 2 * statistics.mean(_params(layer) for layer in arch.layers)
    return per_block, 2 * arch.unembedding.weight.numel(), arch.n_layers


def _forward_flops(lm: LoadedModel, token_counts: list[int]) -> float:
    """One unpatched forward of queries of these lengths: every token through every block, plus one
    unembedding per query."""
    per_block, unembedding, n_layers = _flop_costs(lm)
    return sum(t * n_layers * per_block + unembedding for t in token_counts)


def sweep_limit(lm: LoadedModel, token_counts: list[int]) -> float:
    """The least work of a full layer sweep, in unpatched forwards of the same bare queries: for each
    layer l, the last token through the blocks above l, plus one unembedding per layer."""
    per_block, unembedding, n_layers = _flop_costs(lm)
    least = len(token_counts) * (n_layers * (n_layers - 1) / 2 * per_block + n_layers * unembedding)
    return least / _forward_flops(lm, token_counts)


def sweep_prefix_share(lm: LoadedModel, token_counts: list[int]) -> float:
    """The sweep's other necessary work, in the same unit as :func:`sweep_limit`: every query token but
    the last through every block, once, for the KV cache that the patched last token attends to."""
    per_block, _, n_layers = _flop_costs(lm)
    return sum((t - 1) * n_layers * per_block for t in token_counts) / _forward_flops(lm, token_counts)


def _dev_queries(prompts_file: Path):
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
    prompts, metadata, fmt = _dev_queries(prompts_file)
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
            "plain": lambda: _plain_forward(lm, texts, batch_size),
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
def _plain_forward(lm: LoadedModel, texts: list[str], batch_size: int) -> None:
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
    """Wall time and peak memory of the model's jobs in the last study, from Snakemake's benchmark
    files (``logs/benchmarks/<rule>/<model>[/<task>].tsv``)."""
    seconds, peak_mb, jobs = 0.0, 0.0, 0
    for path in sorted(logs_dir.glob(f"*/{model}.tsv")) + sorted(logs_dir.glob(f"*/{model}/*.tsv")):
        with path.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        seconds += float(row["s"])
        peak_mb = max(peak_mb, float(row["max_rss"]) if row["max_rss"] not in ("", "NA", "-") else 0.0)
        jobs += 1
    return {"jobs": jobs, "job_seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb, 1)}


def machine() -> dict:
    from importlib.metadata import version

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "versions": {p: _version(version, p) for p in ("taskvec", "torch", "transformers")},
    }


def _version(version: Callable[[str], str], package: str) -> str:
    from importlib.metadata import PackageNotFoundError

    try:
        return version(package)
    except PackageNotFoundError:  # run from a source tree (PYTHONPATH=src)
        return "source tree"


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


GPU_FILE = "benchmarks_gpu.json"


def refresh_markdown(out_dir: Path) -> None:
    """Write benchmarks.md from benchmarks.json and, where present, the GPU run's benchmarks_gpu.json."""
    results = json.loads((out_dir / "benchmarks.json").read_text()) if (out_dir / "benchmarks.json").exists() else None
    gpu = json.loads((out_dir / GPU_FILE).read_text()) if (out_dir / GPU_FILE).exists() else None
    text = render_markdown(results) if results else "# Benchmarks\n"
    if gpu:
        text += render_gpu_markdown(gpu)
    store.write_text(text, out_dir / "benchmarks.md")


def render_markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, torch threads {m['torch_threads']}, "
        f"GPU: {m['cuda'] or 'none'}; Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + ".",
        f"Each timing is the median of {results['repeats']} runs (min and max in benchmarks.json), batch size "
        f"{results['batch_size']}; timings that are compared (forward, sweep, naive; plain and hooked passes) run in "
        "alternation. Produced by `taskvec bench`.",
        "",
        "| model | sweep / forward | compute limit | naive / forward | fast vs naive | fast vs naive at the limit "
        "| extraction hook overhead | extraction prompts/s | study job-seconds | workload s (every task) "
        "| peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results["models"].items():
        workload = r.get("workload", {}).get("seconds", "")
        at_limit = f"{r['naive_speedup_at_limit']:.1f}x" if "naive_speedup_at_limit" in r else ""
        lines.append(
            f"| {name} | {r['sweep_ratio']:.2f} | {r['sweep_limit']:.2f} | {r['naive_ratio']:.2f} "
            f"| {r['naive_speedup']:.1f}x | {at_limit} | {r['extraction_overhead']:+.1%} "
            f"| {r['extraction_prompts_per_second']:.1f} | {r['study_seconds']:.0f} | {workload} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        "- *sweep / forward*: the full layer sweep (every layer, the dev prompts of "
        f"`{next(iter(results['models'].values()))['sweep_task']}`) in units of one unpatched forward over the "
        "same bare queries.",
        "- *compute limit*: the FLOPs of the least work the sweep needs (for each layer l, the last token "
        "through the blocks above l, plus one unembedding per layer) over the FLOPs of that unpatched forward.",
        "- *naive*: a full patched forward of every query for every layer, batched; its predictions equal the "
        "fast sweep's (checked before timing).",
        "- *fast vs naive at the limit*: the naive reference's FLOPs (one whole forward per layer) over the "
        "least the sweep must compute (the compute limit, plus each query's tokens but the last through every "
        "block once, for the KV cache the patched token reads): the most any sweep could gain on the naive "
        "reference at the same efficiency.",
        "- *extraction hook overhead*: capturing every block's last-token state against the same forward "
        "passes with no hooks.",
        "- *study job-seconds*: the sum of the model's job wall times in the last `make reproduce` "
        "(Snakemake benchmark files; jobs ran two at a time on this machine).",
        "- *workload*: extraction and evaluation of every task in one process, model load excluded.",
        "",
    ]
    floors = {name: r["workload"] for name, r in results["models"].items() if "floor_seconds" in r.get("workload", {})}
    if floors:
        lines += [
            "### The workload against its compute floor",
            "",
            "| model | dtype | workload s | least TFLOP | matmul GFLOP/s | floor s | workload / floor "
            "| same predictions as float32 | largest accuracy change (ICL, task vector) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for name, w in floors.items():
            for run in (w, w.get("alternative_dtype")):
                if not run:
                    continue
                same = f"{run['same_predictions']:.1%}" if "same_predictions" in run else "(reference)"
                change = (
                    f"{run['max_icl_accuracy_change']:.2f}, {run['max_tv_accuracy_change']:.2f}"
                    if "same_predictions" in run
                    else ""
                )
                lines.append(
                    f"| {name} | {run['dtype']} | {run['seconds']:.1f} | {run['least_tflop']:.2f} "
                    f"| {run['matmul_gflops']:.0f} | {run['floor_seconds']:.1f} | {run['over_floor']:.2f} "
                    f"| {same} | {change} |"
                )
        lines += [
            "",
            "- *least TFLOP*: the workload's least work (each prompt's demonstrations once, its dummy and real "
            "queries after them, the bare queries of the baseline, the sweep's and the test's patched passes, "
            "one unembedding per prediction), at 2 FLOPs per parameter and token.",
            "- *matmul GFLOP/s*: this machine's best rate on the model's own block matrices, 2048 rows at once, "
            "sampled after every task (median shown; the range is in benchmarks.json): a shared machine's speed "
            "drifts, so each task's floor uses the rate measured beside it. The study's passes also spend time "
            "on norms, attention and activations, so the floor is not reachable.",
            "- *floor*: the sum of each task's least FLOPs at its rate: no implementation of this workload in "
            "this dtype on this machine, under the same conditions, takes less.",
            "- The second dtype runs the same prompts with the weights in that dtype (on recent x86 CPUs "
            "bfloat16 matrix products use AMX units): faster, but its predictions are not float32's; the study "
            "keeps float32 on the CPU (`compute.dtype` in params.yaml chooses).",
            "",
        ]
    return "\n".join(lines)


# Random-weight models of real shapes, for measuring throughput where the real weights are not at hand
# (a GPU machine without network). Their predictions mean nothing; only timings and memory are kept.
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
        raise ValueError(f"unknown shape {shape!r}; choose one of {sorted(RANDOM_SHAPES)}")
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
        model, tokenizer, torch_device, {"source": f"random weights, {shape} shape", "parameters": _params(model)}
    )


def _gpu_peak_mb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def workload_lm(
    lm: LoadedModel, prompts_files: list[Path], batch_size: int, tables: dict | None = None, rates: list | None = None
) -> dict:
    """Extraction and evaluation of every task in ``prompts_files`` (the study's work for one seed).
    The results table of each task goes into ``tables`` (by task) when it is given; with ``rates``,
    the machine's matrix rate (:func:`matmul_rate`) is sampled after each task, untimed, so that a
    floor can be set for the conditions each task ran in."""
    per_task, prompts_done = {}, 0
    for prompts_file in prompts_files:
        prompts, metadata, fmt = _dev_queries(prompts_file)
        _synchronize(lm.device)
        start = time.perf_counter()
        evaluated, _, table = run_task(lm, prompts, fmt, batch_size, scoring=metadata.task.rules.scoring)
        _synchronize(lm.device)
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
    }


def workload_flops(lm: LoadedModel, prompts_files: list[Path]) -> float:
    """FLOPs of the least work of :func:`workload_lm`, counted as :func:`sweep_limit` counts them
    (2 x parameters per token and block, 2 x vocabulary x hidden per unembedding; attention scores
    over these short prompts left out):

    - extraction: each prompt's demonstrations once, and each dummy query and the real query after
      them, through every block; one unembedding per prompt for its ICL prediction;
    - baseline: every bare query through every block, one unembedding each;
    - layer sweep on dev: each bare query but its last token through every block, then for each layer
      l the last token through the blocks above l, one unembedding per layer;
    - test at the chosen layer: the same with one layer (counted at the middle layer).
    """
    from taskvec.forward import _shared_prefix_split

    per_block, unembedding, n_layers = _flop_costs(lm)
    tokens = 0  # tokens through every block
    readouts = 0  # unembeddings
    sweep_blocks = 0  # last tokens through the blocks above the patched layer
    for prompts_file in prompts_files:
        prompts, _, fmt = _dev_queries(prompts_file)
        for p in prompts:
            query_tokens = len(lm.tokenizer.encode(fmt.query.format(x=p.query)))
            if p.split == "baseline":
                tokens += query_tokens
                readouts += 1
                continue
            group = [lm.tokenizer.encode(fmt.render(p.demonstrations, q)) for q in (*p.dummies, p.query)]
            common = _shared_prefix_split(group)
            tokens += common + sum(len(t) - common for t in group)
            readouts += 1
            tokens += query_tokens - 1
            if p.split == "dev":
                sweep_blocks += n_layers * (n_layers - 1) // 2
                readouts += n_layers
            else:
                sweep_blocks += n_layers // 2
                readouts += 1
    return (tokens * n_layers + sweep_blocks) * per_block + readouts * unembedding


@torch.inference_mode()
def matmul_rate(lm: LoadedModel, tokens: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of this machine on the model's own block matrices (every linear layer of a block, applied
    to ``tokens`` rows at once, in the model's dtype): a roofline for its forward passes, which also
    spend time on norms, attention and activations."""
    block = describe(lm.model).layers[0]
    linears = [m for m in block.modules() if isinstance(m, torch.nn.Linear)]
    inputs = [torch.randn(tokens, m.in_features, dtype=m.weight.dtype, device=lm.device) for m in linears]
    flops = sum(2 * tokens * m.weight.numel() for m in linears)

    def run() -> None:
        for m, x in zip(linears, inputs):
            torch.nn.functional.linear(x, m.weight)

    run()
    return flops / timed(run, repeats, lm.device).min


def workload_against_floor(flops: list[float], seconds: float, rates: list[float]) -> dict:
    """The workload's seconds beside its compute floor: each task's least FLOPs
    (:func:`workload_flops`) at the machine's best rate on the model's matrices, sampled right after
    that task (a shared machine's speed drifts)."""
    floor = sum(f / rate for f, rate in zip(flops, rates, strict=True))
    return {
        "least_tflop": round(sum(flops) / 1e12, 3),
        "matmul_gflops": round(statistics.median(rates) / 1e9, 1),
        "matmul_gflops_range": [round(min(rates) / 1e9, 1), round(max(rates) / 1e9, 1)],
        "floor_seconds": round(floor, 1),
        "over_floor": round(seconds / floor, 3),
    }


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
    prompts, metadata, fmt = _dev_queries(prompts_file)
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


def render_gpu_markdown(gpu: dict) -> str:
    m = gpu["machine"]
    lines = [
        "",
        "## On a GPU, random weights of a real shape",
        "",
        f"Device: {m['cuda'] or 'none'}; {m['cpus']} CPUs; Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f". Median of {gpu['repeats']} runs. Produced by `taskvec bench-random`. The weights are random "
        "(seed 0), so predictions mean nothing: only time and memory are measured; the prompts are the "
        "study's smollm2-135m prompts, and that tokenizer's vocabulary sets the embedding size.",
        "",
    ]
    for name, r in gpu["models"].items():
        lines += [
            f"### {name} ({r['parameters'] / 1e9:.2f}B parameters, {r['dtype']}, {r['n_layers']} layers, "
            f"vocabulary {r['vocab_size']})",
            "",
            "| sweep / forward | compute limit | naive / forward | fast vs naive | fast = naive predictions "
            "| extraction hook overhead | extraction prompts/s | peak GPU memory MB |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {r['sweep_ratio']:.2f} | {r['sweep_limit']:.2f} | {r['naive_ratio']:.2f} | {r['naive_speedup']:.1f}x "
            f"| {r['sweep_agreement']:.1%} | {r['extraction_overhead']:+.1%} "
            f"| {r['extraction_prompts_per_second']:.1f} | {r['gpu_peak_mb'] or 0:.0f} |",
            "",
            "| workload (every task, one seed) | batch size | tasks | seconds | evaluated prompts/s |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for size, w in sorted(r["workload"].items(), key=lambda item: int(item[0])):
            lines.append(
                f"| extraction + ICL + baseline + sweep | {size} | {w['tasks']} | {w['seconds']:.1f} "
                f"| {w['evaluated_prompts_per_second']:.1f} |"
            )
        oom = r.get("oom_backoff", {})
        if oom.get("checked"):
            how = (
                f"completed after {len(oom['backoffs'])} back-off(s) at batch size {oom['final_batch_size']}; "
                f"results equal to an uninterrupted run at that batch size: {oom['same_results']}"
                if oom["completed"]
                else f"stopped: {oom['message']}"
            )
            lines += [
                "",
                f"Out-of-memory back-off: with all but {oom['headroom_gb']} GB of GPU memory taken, "
                f"{oom['task']} at batch size {oom['start_batch_size']}: {how}.",
            ]
            lines += [f"- {message}" for message in oom["backoffs"]]
        lines.append("")
    return "\n".join(lines)
