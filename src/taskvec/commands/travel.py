"""The extended studies: how far a task vector travels (the number of demonstrations, several
demonstration sets), and their report (with the function-vector comparison)."""

from __future__ import annotations

import logging
from pathlib import Path

from taskvec.commands._common import MODEL_HELP, add_compute, compute, positive

ORDER = 46  # where the group's subcommands come in `taskvec --help`
log = logging.getLogger("taskvec")


def add(sub) -> None:
    p = sub.add_parser(
        "travel",
        help="ICL and task-vector accuracy against the number of demonstrations and of demonstration sets",
        description="For one model and the first sampling of each task, on the study's test prompts and at the "
        "layer the study chose on dev: (1) with the first k of a nested list of demonstrations (the study's own, "
        "then more drawn from the task's other usable pairs), the ICL prediction and theta of that prompt patched "
        "into the bare query, for each k in --ks; (2) theta averaged over M independent demonstration sets of the "
        "study's size (the first is the study's own), patched into the bare query, for each M in --contexts. "
        "Writes one Parquet file of predictions.",
    )
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--tasks", required=True, type=Path, nargs="+", help="task files (`taskvec build-task`)")
    p.add_argument("--prompts", required=True, type=Path, nargs="+", help="their prompts files (one sampling)")
    p.add_argument("--results", required=True, type=Path, nargs="+", help="their results files")
    p.add_argument("--ks", type=positive, nargs="+", default=[1, 2, 3, 5, 10], help="demonstrations per prompt")
    p.add_argument(
        "--contexts", type=positive, nargs="+", default=[1, 2, 4, 8], help="demonstration sets theta is averaged over"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the extra demonstrations and sets")
    p.add_argument("--out", required=True, type=Path, help="output Parquet file of predictions")
    add_compute(p)
    p.set_defaults(func=cmd_travel)


def cmd_travel(args) -> None:
    from taskvec.studies.travel.step import travel_file

    travel_file(
        args.model_dir,
        args.tasks,
        args.prompts,
        args.results,
        args.out,
        compute(args),
        ks=args.ks,
        contexts=args.contexts,
        seed=args.seed,
    )
