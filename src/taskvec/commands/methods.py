"""Every method that turns demonstrations into a vector, compared under one protocol."""

from __future__ import annotations

import logging
from pathlib import Path

from taskvec import defaults
from taskvec.commands._common import MODEL_HELP, add_compute, add_method_settings, compute, method_settings, positive

ORDER = 47  # where the group's subcommands come in `taskvec --help`
log = logging.getLogger("taskvec")


def add(sub) -> None:
    p = sub.add_parser(
        "compare-methods",
        help="every registered vector method against ICL and the per-prompt task vector, one protocol",
        description="For one model and the first sampling of each task, on the study's test prompts and scoring: "
        "ICL and the per-prompt task vector (from the study's results), the bare query, and each task-level "
        "method (`taskvec vector --help` lists them) made from one fixed pool of --pool demonstration sets drawn "
        "from the task's pairs that are no dev or test query; each method's block and strength chosen on the bare "
        "dev queries, then judged on the bare test queries (first token and strict metric), with three controls at "
        "the same configuration (a random vector of the same norm, another task's vector, the vector of the pool "
        "with shuffled labels) and the measured seconds of each method's one-off work and per query. Writes one "
        "Parquet file of predictions, with the pools, choices and costs in its metadata.",
    )
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--tasks", required=True, type=Path, nargs="+", help="task files (`taskvec build-task`)")
    p.add_argument("--prompts", required=True, type=Path, nargs="+", help="their prompts files (one sampling)")
    p.add_argument("--results", required=True, type=Path, nargs="+", help="their results files")
    p.add_argument("--pool", type=positive, default=defaults.POOL, help="demonstration sets in each task's pool")
    add_method_settings(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the pools, the label shuffles and the random controls")
    p.add_argument("--out", required=True, type=Path, help="output Parquet file of predictions")
    add_compute(p)
    p.set_defaults(func=cmd_compare_methods)


def cmd_compare_methods(args) -> None:
    from taskvec.studies.methods.step import compare_methods_file

    compare_methods_file(
        args.model_dir,
        args.tasks,
        args.prompts,
        args.results,
        args.out,
        compute(args),
        pool=args.pool,
        seed=args.seed,
        settings=method_settings(args),
    )
