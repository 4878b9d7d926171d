"""The per-task steps: prompts, task vectors, predictions (or all three in one process)."""

from __future__ import annotations

from pathlib import Path

from taskvec.commands._common import (
    MODEL_HELP,
    MODEL_NAME_HELP,
    add_compute,
    add_prompt_settings,
    compute,
    model_name_of,
    prompt_settings,
)

ORDER = 30  # where the group's subcommands come in `taskvec --help`


def add(sub) -> None:
    p = sub.add_parser("make-prompts", help="filter a task for a tokenizer and sample the baseline/dev/test prompts")
    p.add_argument("--task-file", required=True, type=Path, help="Parquet file from `taskvec build-task`")
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP + " (only its tokenizer is read)")
    p.add_argument("--model-name", help=MODEL_NAME_HELP)
    p.add_argument("--out", required=True, type=Path, help="output Parquet file")
    add_prompt_settings(p)
    p.set_defaults(func=cmd_make_prompts)

    p = sub.add_parser("extract", help="compute the task vector of every dev and test prompt at every layer")
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--prompts", required=True, type=Path, help="Parquet file from `taskvec make-prompts`")
    p.add_argument("--out", required=True, type=Path, help="output Parquet file of activations")
    add_compute(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("evaluate", help="baseline, ICL and task-vector predictions at every layer")
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--prompts", required=True, type=Path, help="Parquet file from `taskvec make-prompts`")
    p.add_argument("--activations", required=True, type=Path, help="Parquet file from `taskvec extract`")
    p.add_argument("--out", required=True, type=Path, help="output Parquet file of predictions")
    add_compute(p)
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
    add_prompt_settings(p, seed=False)
    add_compute(p)
    p.set_defaults(func=cmd_run_task)


def cmd_make_prompts(args) -> None:
    from taskvec.prompts import make_prompt_file

    make_prompt_file(args.task_file, args.model_dir, args.out, *prompt_settings(args), args.seed, model_name_of(args))


def cmd_extract(args) -> None:
    from taskvec.extract import extract_file

    extract_file(args.model_dir, args.prompts, args.out, compute(args))


def cmd_evaluate(args) -> None:
    from taskvec.evaluate import evaluate_file

    evaluate_file(args.model_dir, args.prompts, args.activations, args.out, compute(args))


def cmd_run_task(args) -> None:
    from taskvec.run import run_task_file

    run_task_file(
        args.task_file,
        args.model_dir,
        model_name_of(args),
        *prompt_settings(args),
        args.seeds,
        args.prompts_out,
        args.activations_out,
        args.results_out,
        compute(args),
    )
