"""Command-line interface: one subcommand per pipeline step, usable by hand or from Snakemake."""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from pathlib import Path

from taskvec.errors import TaskvecError

log = logging.getLogger("taskvec")

MODEL_HELP = "model directory written by `taskvec convert-model`"
MODEL_NAME_HELP = (
    "the model's name in the files' metadata and the report (default: its packaged name, the last part "
    "of its Hugging Face id, or its directory's name)"
)


def _add_compute(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("compute")
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda if available)")
    group.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights and activations dtype; auto is bfloat16 on GPU, float32 on CPU",
    )
    group.add_argument("--batch-size", type=int, default=64, help="prompts per forward pass")
    group.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _compute(args):
    from taskvec.compute import Compute

    return Compute(args.device, args.dtype, args.batch_size, args.threads, progress=not args.no_progress)


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _add_prompt_settings(parser: argparse.ArgumentParser, seed: bool = True) -> None:
    group = parser.add_argument_group("prompts")
    if seed:
        group.add_argument("--seed", type=int, default=0, help="seed for sampling the splits")
    group.add_argument("--k", type=_positive, default=5, help="demonstrations per prompt")
    group.add_argument("--n-baseline", type=_positive, default=100, help="bare queries for the baseline")
    group.add_argument("--n-dev", type=_positive, default=50, help="prompts for choosing the layer")
    group.add_argument("--n-test", type=_positive, default=50, help="prompts for the reported accuracies")
    group.add_argument("--n-dummies", type=_positive, default=2, help="dummy queries averaged into each task vector")
    group.add_argument("--demonstration", default="example:{x}->{y}", help="demonstration template")
    group.add_argument("--query", default="example:{x}->", help="query template")
    group.add_argument("--separator", default="\n", help="text between demonstrations")
    group.add_argument(
        "--max-answer-tokens",
        type=_positive,
        default=10,
        help="the strict metric's generation stops at the separator or after this many tokens",
    )


def _add_theta_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--activations", required=True, type=Path, nargs="+", help="activations files of one model")
    parser.add_argument("--results", required=True, type=Path, nargs="+", help="the matching results files")
    parser.add_argument("--out", required=True, type=Path, help="output Parquet file")


def _pair(value: str) -> tuple[str, str]:
    first, sep, second = value.partition(":")
    if not sep or not first or not second:
        raise argparse.ArgumentTypeError(f"a pair is TASK_A:TASK_B, got {value!r}")
    return first, second


def _add_listings(sub) -> None:
    p = sub.add_parser("tasks", help="list the built-in tasks")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("models", help="list the packaged models")
    p.set_defaults(func=cmd_models)


def _add_data_steps(sub) -> None:
    p = sub.add_parser(
        "build-task",
        help="build a task's (input, outputs) pairs into a Parquet file",
        description="Build a built-in task from its pinned source, or a task of your own from a "
        'JSONL file (one {"input": ..., "output": ...} object per line; output may be a list of '
        "valid answers) or a CSV file (columns input and output; several answers separated by |).",
    )
    p.add_argument("task", help="task name: a built-in one (see `taskvec tasks`) or, with --file, a name of yours")
    p.add_argument("--seed", type=int, default=0, help="seed for generated tasks")
    p.add_argument("--file", type=Path, help="JSONL or CSV file of your own pairs")
    rules = p.add_argument_group(
        "rendering and scoring (default: the paper's rules for a built-in task; for a file, "
        "no filter, no leading space, prefix scoring)"
    )
    rules.add_argument(
        "--one-token",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep only pairs with an answer that is one token for the model's tokenizer (the paper's "
        "linguistic and translation tasks)",
    )
    rules.add_argument(
        "--leading-space",
        choices=["auto", "on", "off"],
        help="write input and answer with a leading space (`example: walk-> walked`); auto: the "
        "paper's rule, on when it keeps at least 70%% as many one-token pairs as without",
    )
    rules.add_argument(
        "--scoring",
        choices=["exact", "prefix"],
        help="the paper's first-token rule: exact (the stripped token equals an answer) or prefix "
        "(either is a prefix of the other, as for the paper's knowledge tasks)",
    )
    p.add_argument(
        "--min-pairs", type=_positive, default=1, help="with --file: fail unless the file has at least this many pairs"
    )
    p.add_argument("--out", required=True, type=Path, help="output Parquet file")
    p.set_defaults(func=cmd_build_task)

    p = sub.add_parser("convert-model", help="write a model as a plain safetensors model directory")
    p.add_argument(
        "source", help="packaged:<name> (see `taskvec models`), a Hugging Face model id, or a local model directory"
    )
    p.add_argument("--out", required=True, type=Path, help="output model directory")
    p.set_defaults(func=cmd_convert_model)


def _add_task_steps(sub) -> None:
    p = sub.add_parser("make-prompts", help="filter a task for a tokenizer and sample the baseline/dev/test prompts")
    p.add_argument("--task-file", required=True, type=Path, help="Parquet file from `taskvec build-task`")
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP + " (only its tokenizer is read)")
    p.add_argument("--model-name", help=MODEL_NAME_HELP)
    p.add_argument("--out", required=True, type=Path, help="output Parquet file")
    _add_prompt_settings(p)
    p.set_defaults(func=cmd_make_prompts)

    p = sub.add_parser("extract", help="compute the task vector of every dev and test prompt at every layer")
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--prompts", required=True, type=Path, help="Parquet file from `taskvec make-prompts`")
    p.add_argument("--out", required=True, type=Path, help="output Parquet file of activations")
    _add_compute(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("evaluate", help="baseline, ICL and task-vector predictions at every layer")
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--prompts", required=True, type=Path, help="Parquet file from `taskvec make-prompts`")
    p.add_argument("--activations", required=True, type=Path, help="Parquet file from `taskvec extract`")
    p.add_argument("--out", required=True, type=Path, help="output Parquet file of predictions")
    _add_compute(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "run-task",
        help="make-prompts, extract and evaluate in one process (what the study runs)",
        description="Sample a task's prompts for a model, extract their task vectors and evaluate "
        "the baseline, ICL and the task vector at every layer, for each split seed, loading the "
        "model once. The ICL prompt runs as one more query on the demonstrations the task vectors "
        "come from. Writes the same three files as make-prompts, extract and evaluate.",
    )
    p.add_argument("--task-file", required=True, type=Path, help="Parquet file from `taskvec build-task`")
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--model-name", help=MODEL_NAME_HELP)
    p.add_argument(
        "--seeds",
        required=True,
        type=int,
        nargs="+",
        help="split seeds: each samples its own baseline, dev and test prompts",
    )
    p.add_argument(
        "--prompts-out", required=True, type=Path, nargs="+", help="output Parquet files of prompts, one per seed"
    )
    p.add_argument(
        "--activations-out",
        required=True,
        type=Path,
        nargs="+",
        help="output Parquet files of task vectors, one per seed",
    )
    p.add_argument(
        "--results-out", required=True, type=Path, nargs="+", help="output Parquet files of predictions, one per seed"
    )
    _add_prompt_settings(p, seed=False)
    _add_compute(p)
    p.set_defaults(func=cmd_run_task)


def _add_analyses(sub) -> None:
    p = sub.add_parser(
        "conflicting-tasks",
        help="ICL prompts of task A with task B's theta patched in",
        description="For each pair A:B, run A's test prompts (its demonstrations and query) with the "
        "task vector of B patched in at B's chosen layer, and score the predictions against A's and "
        "B's answers. Reads each task's files of one model and split seed (matched by the task their "
        "metadata names, in any order); writes one Parquet file.",
    )
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--tasks", required=True, type=Path, nargs="+", help="task files (`taskvec build-task`)")
    p.add_argument("--prompts", required=True, type=Path, nargs="+", help="their prompts files")
    p.add_argument("--activations", required=True, type=Path, nargs="+", help="their activations files")
    p.add_argument("--results", required=True, type=Path, nargs="+", help="their results files")
    p.add_argument(
        "--pairs",
        nargs="+",
        required=True,
        metavar="A:B",
        type=_pair,
        help="task pairs, for example next_letter:to_upper",
    )
    p.add_argument("--out", required=True, type=Path, help="output Parquet file")
    _add_compute(p)
    p.set_defaults(func=cmd_conflicting_tasks)

    p = sub.add_parser(
        "robustness",
        help="t-SNE, distances and task identification of the task vectors",
        description="Compare every dev and test task vector of a model's tasks at one layer (the "
        "best of the mean dev curve): t-SNE coordinates, within- and across-task cosine distance "
        "histograms, and leave-one-out nearest-centroid accuracy. Writes one Parquet file.",
    )
    _add_theta_inputs(p)
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser(
        "vocabulary",
        help="top tokens of each task's mean theta through the unembedding",
        description="Read each task's mean task vector at its chosen layer and at the last layer "
        "through the final norm and the unembedding, keep the top tokens, and judge whether they name "
        "the task's outputs (the share of them that are the task's answer tokens, against the same "
        "share for the other tasks' theta). Writes one Parquet file.",
    )
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    _add_theta_inputs(p)
    p.add_argument("--prompts", required=True, type=Path, nargs="+", help="the matching prompts files (answers)")
    _add_compute(p)
    p.set_defaults(func=cmd_vocabulary)


def _add_study_and_benchmarks(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark the layer sweep and extraction against their limits",
        description="Time the fast layer sweep against one unpatched forward, its compute limit and "
        "a naive patched reference (predictions checked equal first); the extraction hooks against "
        "a plain forward; and each model's whole workload. Needs a finished study (data/). Writes "
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
    p.add_argument("--repeats", type=_positive, default=5, help="timed runs per measurement (median reported)")
    p.add_argument("--task", default="next_letter", help="task whose dev prompts the sweep is timed on")
    p.add_argument("--no-workload", action="store_true", help="skip timing every task's full workload")
    p.add_argument(
        "--compare-dtype",
        default="bfloat16",
        choices=["bfloat16", "float16", "float32", "none"],
        help="also time the workload in this dtype and count how many predictions change (none: skip)",
    )
    _add_compute(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "run-study",
        help="run the whole study (Snakemake with the project's profile)",
        description="Run the study's workflow in the current directory with its default profile "
        "(workflow/profiles/default, which a plain `snakemake` uses too) "
        "(what `dvc repro` and `make reproduce` run). One run per directory: a second one refuses. "
        "After a run that was killed (SIGKILL, power cut), it releases the lock that run left behind "
        "(only when no Snakemake process works in the directory) and makes the unfinished jobs again. "
        "Arguments after -- go to Snakemake.",
    )
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="extra Snakemake arguments, after --")
    p.set_defaults(func=cmd_run_study)

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
    p.add_argument("--repeats", type=_positive, default=5, help="timed runs per measurement (median reported)")
    p.add_argument(
        "--batch-sizes",
        type=_positive,
        nargs="+",
        default=[64, 256],
        help="batch sizes of the workload (the first is also the sweep's)",
    )
    p.add_argument("--task", default="next_letter", help="task whose dev prompts the sweep is timed on")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cuda or cpu")
    p.add_argument("--dtype", default="auto", help="auto (bfloat16 on GPU, float32 on CPU), float32 or bfloat16")
    p.set_defaults(func=cmd_bench_random)

    p = sub.add_parser("report", help="build reports/ (HTML, tables, figures, metrics.json) from results files")
    p.add_argument(
        "results",
        nargs="+",
        type=Path,
        help="results files (from `taskvec run-task` or `evaluate`); each names its model, task and split "
        "seed in its metadata",
    )
    p.add_argument(
        "--analyses",
        nargs="*",
        type=Path,
        default=[],
        help="analysis files (conflicting-tasks, robustness, vocabulary)",
    )
    p.add_argument("--benchmarks-dir", type=Path, help="Snakemake benchmark files, for the report's time per step")
    p.add_argument(
        "--prompts",
        nargs="*",
        type=Path,
        default=[],
        help="the prompts files of the results files, in the same order (to diagnose ICL's errors)",
    )
    p.add_argument("--out", required=True, type=Path, help="report directory")
    p.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskvec",
        description="Extract and patch in-context-learning task vectors (Hendel et al., 2023). "
        "Each subcommand is one step of the study; `taskvec <step> --help` explains it.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<step>")
    _add_listings(sub)
    _add_data_steps(sub)
    _add_task_steps(sub)
    _add_analyses(sub)
    _add_study_and_benchmarks(sub)
    return parser


def cmd_tasks(args) -> None:
    from taskvec.tasks import TASKS

    for task in TASKS.values():
        rules = task.rules
        print(f"{task.name:28} {task.category:12} {task.example:22} {task.description}")
        print(
            f"{'':28} rules: one_token={str(rules.one_token).lower()} leading_space={rules.leading_space} "
            f"scoring={rules.scoring}"
        )
        print(
            textwrap.fill(
                f"differs from the paper: {task.differs}", 118, initial_indent=" " * 29, subsequent_indent=" " * 29
            )
        )


def cmd_models(args) -> None:
    from taskvec.models import PACKAGED_MODELS

    for model in PACKAGED_MODELS.values():
        print(f"packaged:{model.name:14} {model.package:26} {model.description}")


def cmd_build_task(args) -> None:
    from taskvec.tasks import get_task
    from taskvec.tasks.base import write_task
    from taskvec.tasks.custom import custom_task, default_rules

    if args.file is not None:
        task = custom_task(args.task, args.file, default_rules(bool(args.one_token)), min_pairs=args.min_pairs)
    else:
        task = get_task(args.task)
    rules = task.rules.with_settings(one_token=args.one_token, leading_space=args.leading_space, scoring=args.scoring)
    count = write_task(task, args.seed, args.out, rules)
    log.info("wrote %d pairs of %s to %s", count, args.task, args.out)


def cmd_convert_model(args) -> None:
    from taskvec.models import convert_model

    provenance = convert_model(args.source, args.out)
    log.info("wrote %s (%s, %d layers) to %s", args.source, provenance["model_type"], provenance["n_layers"], args.out)


def _prompt_settings(args):
    from taskvec.prompts import PromptFormat, SplitSizes

    return (
        PromptFormat(args.demonstration, args.query, args.separator, args.max_answer_tokens),
        SplitSizes(args.k, args.n_baseline, args.n_dev, args.n_test, args.n_dummies),
    )


def _model_name(args) -> str:
    from taskvec.models import model_name

    return args.model_name or model_name(args.model_dir)


def cmd_make_prompts(args) -> None:
    from taskvec.prompts import make_prompt_file

    make_prompt_file(args.task_file, args.model_dir, args.out, *_prompt_settings(args), args.seed, _model_name(args))


def cmd_extract(args) -> None:
    from taskvec.extract import extract_file

    extract_file(args.model_dir, args.prompts, args.out, _compute(args))


def cmd_evaluate(args) -> None:
    from taskvec.evaluate import evaluate_file

    evaluate_file(args.model_dir, args.prompts, args.activations, args.out, _compute(args))


def cmd_run_task(args) -> None:
    from taskvec.run import run_task_file

    run_task_file(
        args.task_file,
        args.model_dir,
        _model_name(args),
        *_prompt_settings(args),
        args.seeds,
        args.prompts_out,
        args.activations_out,
        args.results_out,
        _compute(args),
    )


def cmd_conflicting_tasks(args) -> None:
    from taskvec.analysis.conflicting import conflicting_tasks_file

    conflicting_tasks_file(
        args.model_dir, args.tasks, args.prompts, args.activations, args.results, args.pairs, args.out, _compute(args)
    )


def _matching(args) -> None:
    if len(args.activations) != len(args.results):
        raise ValueError(
            f"give one results file per activations file ({len(args.activations)} activations, "
            f"{len(args.results)} results)"
        )


def cmd_robustness(args) -> None:
    from taskvec.analysis.robustness import robustness_file

    _matching(args)
    summary = robustness_file(args.activations, args.results, args.out)
    log.info(
        "layer %d: nearest-centroid accuracy %.2f over %d task vectors of %d tasks",
        summary["layer"],
        summary["nearest_centroid_accuracy"],
        summary["n_vectors"],
        summary["n_tasks"],
    )


def cmd_vocabulary(args) -> None:
    from taskvec.analysis.vocabulary import vocabulary_file

    _matching(args)
    if len(args.prompts) != len(args.activations):
        raise ValueError(
            f"give one prompts file per activations file ({len(args.activations)} activations, "
            f"{len(args.prompts)} prompts)"
        )
    vocabulary_file(args.model_dir, args.activations, args.results, args.prompts, args.out, _compute(args))


def cmd_bench(args) -> None:
    from taskvec.bench import run_benchmarks

    run_benchmarks(
        args.models,
        args.data_dir,
        args.logs_dir,
        args.out,
        _compute(args),
        repeats=args.repeats,
        workload=not args.no_workload,
        task=args.task,
        compare_dtype=None if args.compare_dtype == "none" else args.compare_dtype,
    )
    print(f"Benchmarks: {(args.out / 'benchmarks.md').resolve()}")


def cmd_run_study(args) -> None:
    from taskvec.study import run_study

    extra = args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else args.snakemake_args
    status = run_study(extra)
    if status:
        raise TaskvecError(
            f"the workflow stopped with exit status {status}",
            fix="read the failed job's log named above, fix its cause, and run it again",
        )


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


def cmd_report(args) -> None:
    from taskvec.report import build_report

    index = build_report(args.results, args.out, args.analyses, args.benchmarks_dir, args.prompts)
    print(f"Report: {index.resolve()}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("transformers", "accelerate", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        args.func(args)
    except TaskvecError as error:
        # the message says what is wrong and the fix what to do; -v adds where it happened
        log.error("%s", error, exc_info=error if args.verbose else None)
        return 1
    except (ValueError, KeyError, FileNotFoundError, RuntimeError, MemoryError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        log.error("%s", message, exc_info=error if args.verbose else None)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
