"""Data steps: a task's pairs, a model's weights."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from taskvec.commands._common import positive

ORDER = 20  # where the group's subcommands come in `taskvec --help`
log = logging.getLogger("taskvec")


def add(sub) -> None:
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
        "--min-pairs", type=positive, default=1, help="with --file: fail unless the file has at least this many pairs"
    )
    p.add_argument("--out", required=True, type=Path, help="output Parquet file")
    p.set_defaults(func=cmd_build_task)

    p = sub.add_parser("convert-model", help="write a model as a plain safetensors model directory")
    p.add_argument(
        "source", help="packaged:<name> (see `taskvec models`), a Hugging Face model id, or a local model directory"
    )
    p.add_argument("--out", required=True, type=Path, help="output model directory")
    p.set_defaults(func=cmd_convert_model)


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
