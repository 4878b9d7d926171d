"""The benchmarks: the layer sweep, extraction and the workload against their limits, on a finished
study's models or on a random-weight model of a real shape."""

from __future__ import annotations

from pathlib import Path

from taskvec.commands._common import DTYPES, add_compute, compute, device, positive

ORDER = 55  # where the group's subcommands come in `taskvec --help`


def add(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark the layer sweep and extraction against their limits",
        description="Time the fast layer sweep against one unpatched forward, its compute limit and "
        "a naive patched reference (predictions checked equal first); the extraction hooks against "
        "a plain forward; each model's whole workload; and implicit ICL's calibration step against "
        "the time reading its weights takes. Needs a finished study (data/). Writes "
        "benchmarks.json and benchmarks.md.",
    )
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"], help="model names under data/models")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="the study's data directory")
    p.add_argument(
        "--logs-dir",
        type=Path,
        default=Path("logs/benchmarks"),
        help="Snakemake benchmark files of the last study (for per-model study time and memory)",
    )
    p.add_argument("--out", type=Path, default=Path("reports"), help="directory for benchmarks.json and .md")
    p.add_argument("--repeats", type=positive, default=5, help="timed runs per measurement (median reported)")
    p.add_argument("--task", default="next_letter", help="task whose dev prompts the sweep is timed on")
    p.add_argument("--no-workload", action="store_true", help="skip timing every task's full workload")
    p.add_argument(
        "--compare-dtype",
        default="bfloat16",
        choices=["bfloat16", "float16", "float32", "none"],
        help="also time the workload in this dtype and count how many predictions change (none: skip)",
    )
    add_compute(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "bench-random",
        help="benchmark a random-weight model of a real shape (e.g. on a GPU)",
        description="Build a Llama model of a real shape with random weights (seed 0) directly on the "
        "device and time the layer sweep, the naive reference, extraction and the 18-task workload at "
        "each batch size, with peak GPU memory and an out-of-memory back-off check. Only timings and "
        "memory mean anything: the weights are random. Needs a tokenizer directory and a study's "
        "prompts files. Writes benchmarks_gpu.json and refreshes benchmarks.md in --out.",
    )
    p.add_argument("--shape", default="llama-7b", help="model shape: llama-7b or tiny-llama")
    p.add_argument(
        "--tokenizer-dir",
        type=Path,
        default=Path("data/models/smollm2-135m"),
        help="directory with the tokenizer to use (its vocabulary sets the embedding size)",
    )
    p.add_argument(
        "--prompts-dir",
        type=Path,
        default=Path("data/prompts/smollm2-135m"),
        help="prompts files made with that tokenizer, laid out as <task>/sample0.parquet",
    )
    p.add_argument("--out", type=Path, default=Path("reports"), help="directory for benchmarks_gpu.json")
    p.add_argument("--repeats", type=positive, default=5, help="timed runs per measurement (median reported)")
    p.add_argument(
        "--batch-sizes",
        type=positive,
        nargs="+",
        default=[64, 256],
        help="batch sizes of the workload (the first is also the sweep's)",
    )
    p.add_argument("--task", default="next_letter", help="task whose dev prompts the sweep is timed on")
    p.add_argument("--device", type=device, default="auto", help="auto (cuda if available), cuda, cuda:N or cpu")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16 or float16",
    )
    p.set_defaults(func=cmd_bench_random)


def cmd_bench(args) -> None:
    from taskvec.bench import run_benchmarks

    run_benchmarks(
        args.models,
        args.data_dir,
        args.logs_dir,
        args.out,
        compute(args),
        repeats=args.repeats,
        workload=not args.no_workload,
        task=args.task,
        compare_dtype=None if args.compare_dtype == "none" else args.compare_dtype,
    )
    print(f"Benchmarks: {(args.out / 'benchmarks.md').resolve()}")


def cmd_bench_random(args) -> None:
    from taskvec.bench import run_random_benchmark

    run_random_benchmark(
        args.shape,
        args.tokenizer_dir,
        args.prompts_dir,
        args.out,
        repeats=args.repeats,
        batch_sizes=tuple(args.batch_sizes),
        device=args.device,
        dtype=args.dtype,
        task=args.task,
    )
    print(f"Benchmarks: {(args.out / 'benchmarks.md').resolve()}")
