"""The per-task steps: prompts, extraction (task vectors and ICL outputs), evaluation; the study runs
`extract-task` (prompts and extraction for every split seed) and `evaluate`."""

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

    p = sub.add_parser(
        "extract",
        help="theta of every dev and test prompt at every layer, and the ICL prompts' predictions",
        description="Run each dev and test prompt's demonstrations once: theta (the last-token "
        "residual stream at every layer, averaged over the dummy queries) and the ICL prompt as one more "
        "query on the same demonstrations (its next token and its greedy generation for the strict "
        "metric). Everything that needs the demonstrations happens here; `taskvec evaluate` runs the "
        "bare queries.",
    )
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--prompts", required=True, type=Path, help="Parquet file from `taskvec make-prompts`")
    p.add_argument("--out", required=True, type=Path, help="output Parquet file of activations")
    p.add_argument("--icl-out", required=True, type=Path, help="output Parquet file of the ICL predictions")
    add_compute(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser(
        "evaluate",
        help="baseline and task-vector predictions at every layer, from extracted activations",
        description="Evaluate the bare queries of prompts files with the theta and ICL outputs that "
        "`taskvec extract` (or `extract-task`) made from them: the baseline, the task vector at every "
        "layer on dev, on test at the layer chosen on dev, and the strict metric's generations. Each "
        "prompts file's activations and ICL files are found by their metadata (model, task, split "
        "seed); the results files follow the order of the prompts files.",
    )
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--prompts", required=True, type=Path, nargs="+", help="Parquet files from `make-prompts`")
    p.add_argument("--activations", required=True, type=Path, nargs="+", help="Parquet files from `extract`")
    p.add_argument("--icl", required=True, type=Path, nargs="+", help="ICL files from `extract` (--icl-out)")
    p.add_argument("--out", required=True, type=Path, nargs="+", help="output Parquet files, one per prompts file")
    add_compute(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "extract-task",
        help="make-prompts and extract for every split seed of a task, loading the model once (the study's step)",
        description="Sample a task's prompts for a model and extract their task vectors and ICL outputs, "
        "for each split seed, loading the model once. Writes the files that make-prompts and extract "
        "write, one of each per seed; `taskvec evaluate` then reads them.",
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
        "--icl-out", required=True, type=Path, nargs="+", help="output Parquet files of ICL predictions, one per seed"
    )
    add_prompt_settings(p, seed=False)
    add_compute(p)
    p.set_defaults(func=cmd_extract_task)


def cmd_make_prompts(args) -> None:
    from taskvec.prompts import make_prompt_file

    make_prompt_file(args.task_file, args.model_dir, args.out, *prompt_settings(args), args.seed, model_name_of(args))


def cmd_extract(args) -> None:
    from taskvec.jobs.extraction import extract_prompt_file

    extract_prompt_file(args.model_dir, args.prompts, args.out, args.icl_out, compute(args))


def cmd_evaluate(args) -> None:
    from taskvec.jobs.evaluation import evaluate_files

    evaluate_files(args.model_dir, args.prompts, args.activations, args.icl, args.out, compute(args))


def cmd_extract_task(args) -> None:
    from taskvec.jobs.extraction import extract_task_file

    extract_task_file(
        args.task_file,
        args.model_dir,
        model_name_of(args),
        *prompt_settings(args),
        args.seeds,
        args.prompts_out,
        args.activations_out,
        args.icl_out,
        compute(args),
    )
