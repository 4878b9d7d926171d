"""benchmarks.md from benchmarks.json (and benchmarks_gpu.json where a GPU run wrote it)."""

from __future__ import annotations

import json
from pathlib import Path

from taskvec import store

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
    lines += calibration_lines(results)
    return "\n".join(lines)


def calibration_lines(results: dict) -> list[str]:
    """The table of implicit ICL's calibration step against its read floor, where it was measured."""
    steps = {name: r["calibration"] for name, r in results["models"].items() if "calibration" in r}
    if not steps:
        return []
    lines = [
        "### Implicit ICL's calibration step against its read floor",
        "",
        "| model | threads | batch | forward s | backward s | step s | matrices MB (output layer) "
        "| read GB/s: sum, 2-row matmul | floor s | step / floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, c in steps.items():
        lines.append(
            f"| {name} | {c['threads']} | {c['batch']} | {c['forward_seconds']:.3f} | {c['backward_seconds']:.3f} "
            f"| {c['step_seconds']:.3f} | {c['matrix_mb']:.0f} ({c['output_layer_mb']:.0f}) "
            f"| {c['sum_gb_per_s']:.1f}, {c['matmul_gb_per_s']:.1f} | {c['floor_seconds']:.3f} "
            f"| {c['over_floor']:.2f} |"
        )
    lines += [
        "",
        "- *step*: one step of the noisy self-calibration (`taskvec.methods.implicit_icl`), its forward and backward "
        "pass over a batch of bare queries of the sweep's task (median of the steps after the first), at the "
        "threads the comparison job runs with.",
        "- *matrices*: every linear layer's weights, the output layer's included (the loss needs the whole "
        "vocabulary); at a dozen rows a pass is bound by reading them, once forward and once backward.",
        "- *read GB/s*: this machine's read rate at those threads, summing a 512 MiB buffer and multiplying "
        "2 rows by a matrix of that size (the best of 5 each).",
        "- *floor*: the matrices' bytes, twice, at the faster rate: no implementation of the same step, batch "
        "and dtype reads its weights in less time. The ratio says how far this machine's float32 matrix "
        "kernels at a dozen rows are from its memory.",
        "",
    ]
    return lines


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
            "| workload (every task, one seed) | batch size | tasks | seconds | evaluated prompts/s "
            "| least TFLOP | matmul TFLOP/s | floor s | workload / floor |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for size, w in sorted(r["workload"].items(), key=lambda item: int(item[0])):
            floor = (
                f"| {w['least_tflop']:.2f} | {w['matmul_gflops'] / 1000:.1f} | {w['floor_seconds']:.1f} "
                f"| {w['over_floor']:.2f} |"
                if "over_floor" in w
                else "| | | | |"
            )
            lines.append(
                f"| extraction + ICL + baseline + sweep | {size} | {w['tasks']} | {w['seconds']:.1f} "
                f"| {w['evaluated_prompts_per_second']:.1f} {floor}"
            )
        lines += _block_call_lines(r["workload"])
        lines += _targets_lines(r.get("targets"))
        lines += _profile_lines(r.get("profile"))
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


TARGET_NAMES = {
    "workload_over_floor": "workload / its FLOP floor (best batch size)",
    "sweep_over_limit": "layer sweep / its compute limit",
    "extraction_overhead": "extraction hook overhead",
}


def _targets_lines(targets: dict | None) -> list[str]:
    if not targets:
        return [
            "",
            "The FLOP floor, the targets and the profile are not in this run: benchmarks_gpu.json predates them "
            "(and the GPU-path changes they go with: the sweep's pass plan, padding to 8 columns, pinned copies). "
            "A new `taskvec bench-random` on a GPU measures them.",
        ]
    lines = ["", "| target | measured | aim | met |", "| --- | ---: | ---: | --- |"]
    for key, t in targets.items():
        percent = key == "extraction_overhead"
        value = f"{t['measured']:+.1%}" if percent else f"{t['measured']:.2f}"
        aim = f"< {t['target']:.0%}" if percent else f"<= {t['target']:.2f}"
        lines.append(f"| {TARGET_NAMES.get(key, key)} | {value} | {aim} | {'yes' if t['met'] else 'no'} |")
    sweep = targets.get("sweep_over_limit", {})
    if "plan_flops_over_limit" in sweep:
        lines += [
            "",
            f"- The sweep's pass plan computes {sweep['plan_flops_over_limit']:.2f}x the limit's FLOPs on these "
            "queries: rows above a pass's lowest layer compute blocks that their patch then overwrites; "
            "fewer such blocks would take more passes, each reading every weight once.",
        ]
    return lines


def _block_call_lines(workload: dict) -> list[str]:
    """What the workload's number of block calls alone costs, where the run counted them."""
    counted = {size: w for size, w in workload.items() if "block_call_floor_seconds" in w}
    if not counted:
        return []
    lines = [""]
    for size, w in sorted(counted.items(), key=lambda item: int(item[0])):
        lines.append(
            f"- At batch size {size} the workload makes {w['block_calls']:,} block calls (one block over one "
            f"batch); a block call costs at least {w['block_call_ms']:.3f} ms here (a one-token forward over "
            f"the number of blocks: its weights read once, its kernels launched), so these calls alone take "
            f"{w['block_call_floor_seconds']:.1f} s, {w['block_call_share']:.0%} of the "
            f"workload's {w['seconds']:.1f} s and {w['block_calls_over_flop_floor']:.1f}x "
            "its FLOP floor: at these prompt counts the number of passes, not the FLOPs, sets the least time."
            if w["block_calls_over_flop_floor"] > 1
            else f"- At batch size {size} the workload makes {w['block_calls']:,} block calls; at "
            f"{w['block_call_ms']:.3f} ms each (a one-token forward over the number of blocks) they take "
            f"{w['block_call_floor_seconds']:.1f} s, below its FLOP floor."
        )
    return lines


def _profile_lines(profile: dict | None) -> list[str]:
    if not profile:
        return []
    lines = [
        "",
        "Where the time goes (torch profiler, one run of each: the busy time of the device, the share of it "
        "each of the top operators takes with the kernels it launched):",
        "",
    ]
    for name, p in profile.items():
        ops = "; ".join(f"{t['op']} {t['share']:.0%}" for t in p["top"][:5])
        busy = (
            f" in {p['wall_ms']:.1f} ms of wall time ({p['total_ms'] / p['wall_ms']:.0%} busy)"
            if p.get("wall_ms") and p["clock"] == "GPU"
            else ""
        )
        lines.append(f"- {name}: {p['total_ms']:.1f} ms of {p['clock']} time{busy}; {ops}")
    return lines
