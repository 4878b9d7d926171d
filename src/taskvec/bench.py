"""Benchmarks of the study's forward passes, against their compute limits and naive references.

Run with ``taskvec bench`` after a study (it reads the converted models and prompt files under
``data/``); it writes ``benchmarks.json`` and ``benchmarks.md``. Every timing is the median of
``repeats`` runs (min and max are kept too); predictions of the fast sweep are checked against the
naive reference before either is timed.
"""

from __future__ import annotations

import csv
import dataclasses
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
from taskvec.prompts import PromptFormat, read_prompts
from taskvec.run import run_task

log = logging.getLogger(__name__)

SWEEP_TASK = "next_letter"  # one-letter queries: the sweep's limit is about 5 forwards on smollm2-135m


@dataclasses.dataclass(frozen=True)
class Timing:
    median: float
    min: float
    max: float
    runs: int

    def as_dict(self) -> dict:
        return {"median": round(self.median, 4), "min": round(self.min, 4), "max": round(self.max, 4),
                "runs": self.runs}


def timed(fn: Callable[[], object], repeats: int) -> Timing:
    return timed_together({"only": fn}, repeats)["only"]


def timed_together(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, Timing]:
    """Time functions that are compared with each other in alternation (a, b, a, b, ...), so that a
    slow phase of the machine (another process, frequency changes) falls on both alike."""
    for fn in fns.values():
        fn()  # warm-up: allocator, thread pool, lazy initialisation
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: Timing(statistics.median(t), min(t), max(t), repeats) for name, t in times.items()}


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def sweep_limit(lm: LoadedModel, token_counts: list[int]) -> float:
    """The least work of a full layer sweep, in unpatched forwards of the same bare queries.

    A weight does one multiply-add per token, so FLOPs are 2 x parameters per token (attention
    scores over these short prompts are negligible and left out). The unpatched forward runs every
    query token through every block, plus one unembedding per query; the sweep's least work is, for
    each layer l, the last token through the blocks above l, plus one unembedding per layer.
    """
    arch = describe(lm.model)
    per_layer = 2 * statistics.mean(_params(layer) for layer in arch.layers)
    unembedding = 2 * arch.unembedding.weight.numel()
    n_layers = arch.n_layers
    forward = sum(t * n_layers * per_layer + unembedding for t in token_counts)
    least = len(token_counts) * (n_layers * (n_layers - 1) / 2 * per_layer + n_layers * unembedding)
    return least / forward


def _dev_queries(prompts_file: Path):
    prompts, metadata = read_prompts(prompts_file)
    fmt = PromptFormat(**metadata["format"])
    return prompts, metadata, fmt


def bench_model(model_dir: Path, prompts_dir: Path, repeats: int, batch_size: int, device: str,
                dtype: str, task: str = SWEEP_TASK) -> dict:
    lm = load_model(model_dir, device=device, dtype=dtype)
    prompts, _, fmt = _dev_queries(prompts_dir / task / "sample0.parquet")
    dev = [p for p in prompts if p.split == "dev"]
    queries = [fmt.query.format(x=p.query) for p in dev]
    vectors = task_vectors(lm, dev, fmt, batch_size)

    log.info("%s: checking the fast sweep against the naive reference on %d %s dev prompts", model_dir.name,
             len(dev), task)
    fast = patched_sweep(lm, queries, vectors, batch_size=batch_size)
    naive = patched_sweep_naive(lm, queries, vectors, batch_size=batch_size)
    if not np.array_equal(fast, naive):
        raise RuntimeError(f"{model_dir.name}: the fast sweep and the naive reference disagree; not timing them")

    log.info("%s: timing the sweep, the naive reference and extraction (%d runs each)", model_dir.name, repeats)
    sweeps = timed_together({
        "forward": lambda: next_tokens(lm, queries, batch_size),
        "sweep": lambda: patched_sweep(lm, queries, vectors, batch_size=batch_size),
        "naive": lambda: patched_sweep_naive(lm, queries, vectors, batch_size=batch_size),
    }, repeats)
    forward_t, sweep_t, naive_t = sweeps["forward"], sweeps["sweep"], sweeps["naive"]
    token_counts = [len(lm.tokenizer.encode(q)) for q in queries]

    texts = [fmt.render(p.demonstrations, d) for p in dev for d in p.dummies]
    passes = timed_together({"plain": lambda: _plain_forward(lm, texts, batch_size),
                             "hooked": lambda: last_token_states(lm, texts, batch_size)}, repeats)
    plain_t, hooked_t = passes["plain"], passes["hooked"]
    extract_t = timed(lambda: task_vectors(lm, dev, fmt, batch_size), repeats)

    return {
        "n_layers": describe(lm.model).n_layers,
        "sweep_task": task,
        "sweep_prompts": len(dev),
        "sweep_ratio": round(sweep_t.median / forward_t.median, 3),
        "sweep_limit": round(sweep_limit(lm, token_counts), 3),
        "naive_ratio": round(naive_t.median / forward_t.median, 3),
        "naive_speedup": round(naive_t.median / sweep_t.median, 3),
        "extraction_overhead": round(hooked_t.median / plain_t.median - 1, 4),
        "extraction_prompts_per_second": round(len(dev) / extract_t.median, 2),
        "shared_prefix_speedup": round(hooked_t.median / extract_t.median, 3),
        "timings_seconds": {
            "unpatched_forward": forward_t.as_dict(), "fast_sweep": sweep_t.as_dict(),
            "naive_sweep": naive_t.as_dict(), "plain_forward_extraction_texts": plain_t.as_dict(),
            "hooked_forward_extraction_texts": hooked_t.as_dict(), "extraction_shared_prefix": extract_t.as_dict(),
        },
    }


@torch.inference_mode()
def _plain_forward(lm: LoadedModel, texts: list[str], batch_size: int) -> None:
    """The passes :func:`last_token_states` makes, without its hooks."""
    for rows in batches(texts, batch_size):
        lm.model.base_model(**encode(lm, [texts[i] for i in rows]).inputs(), use_cache=False)


def workload_seconds(model_dir: Path, prompts_dir: Path, batch_size: int, device: str, dtype: str) -> dict:
    """The study's compute for one model, model load excluded: extraction and evaluation of every
    task whose prompts file exists (what the paper's own code times as its main experiment)."""
    lm = load_model(model_dir, device=device, dtype=dtype)
    per_task = {}
    for prompts_file in sorted(prompts_dir.glob("*/sample0.parquet")):
        prompts, metadata, fmt = _dev_queries(prompts_file)
        start = time.perf_counter()
        run_task(lm, prompts, fmt, batch_size, exact=metadata["task"]["one_token_output"])
        task = prompts_file.parent.name
        per_task[task] = round(time.perf_counter() - start, 2)
        log.info("%s: workload of %s took %.1f s", model_dir.name, task, per_task[task])
    return {"tasks": len(per_task), "seconds": round(sum(per_task.values()), 1), "per_task": per_task}


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
        "versions": {p: version(p) for p in ("taskvec", "torch", "transformers")},
    }


def run_benchmarks(models: list[str], data_dir: Path, logs_dir: Path, out_dir: Path, repeats: int = 5,
                   batch_size: int = 64, device: str = "auto", dtype: str = "auto",
                   workload: bool = True, task: str = SWEEP_TASK) -> dict:
    results = {"machine": machine(), "repeats": repeats, "batch_size": batch_size, "models": {}}
    for model in models:
        model_dir, prompts_dir = data_dir / "models" / model, data_dir / "prompts" / model
        if not (prompts_dir / task / "sample0.parquet").exists():
            raise FileNotFoundError(f"{prompts_dir / task / 'sample0.parquet'} is missing: run the study first "
                                    "(make reproduce)")
        entry = bench_model(model_dir, prompts_dir, repeats, batch_size, device, dtype, task)
        if workload:
            entry["workload"] = workload_seconds(model_dir, prompts_dir, batch_size, device, dtype)
        jobs = study_job_times(logs_dir, model)
        entry["study_seconds"] = jobs["job_seconds"]
        entry["study_jobs"] = jobs["jobs"]
        entry["peak_rss_mb"] = max(jobs["peak_rss_mb"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        results["models"][model] = entry
    store.write_json(results, out_dir / "benchmarks.json")
    store.write_text(render_markdown(results), out_dir / "benchmarks.md")
    return results


def render_markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, torch threads {m['torch_threads']}, "
        f"GPU: {m['cuda'] or 'none'}; Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        f"Each timing is the median of {results['repeats']} runs (min and max in benchmarks.json), batch size "
        f"{results['batch_size']}; timings that are compared (forward, sweep, naive; plain and hooked passes) run in "
        "alternation. Produced by `taskvec bench`.",
        "",
        "| model | sweep / forward | compute limit | naive / forward | fast vs naive | extraction hook overhead "
        "| extraction prompts/s | study job-seconds | workload s (18 tasks) | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results["models"].items():
        workload = r.get("workload", {}).get("seconds", "")
        lines.append(
            f"| {name} | {r['sweep_ratio']:.2f} | {r['sweep_limit']:.2f} | {r['naive_ratio']:.2f} "
            f"| {r['naive_speedup']:.1f}x | {r['extraction_overhead']:+.1%} | {r['extraction_prompts_per_second']:.1f} "
            f"| {r['study_seconds']:.0f} | {workload} | {r['peak_rss_mb']:.0f} |"
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
        "- *extraction hook overhead*: capturing every block's last-token state against the same forward "
        "passes with no hooks.",
        "- *study job-seconds*: the sum of the model's job wall times in the last `make reproduce` "
        "(Snakemake benchmark files; jobs ran two at a time on this machine).",
        "- *workload*: extraction and evaluation of every task in one process, model load excluded.",
        "",
    ]
    return "\n".join(lines)
