"""Running the whole study: Snakemake with the project's profile, one run per directory."""

from __future__ import annotations

import argparse

from taskvec.errors import TaskvecError

ORDER = 50  # where the group's subcommands come in `taskvec --help`


def add(sub) -> None:
    p = sub.add_parser(
        "run-study",
        help="run the whole study (Snakemake with the project's profile)",
        description="Run the study's workflow in the current directory with its default profile "
        "(profiles/default, which a plain `snakemake` uses too) "
        "(what `dvc repro` and `make reproduce` run). One run per directory: a second one refuses. "
        "After a run that was killed (SIGKILL, power cut), it releases the lock that run left behind "
        "(only when no Snakemake process works in the directory) and makes the unfinished jobs again. "
        "Arguments after -- go to Snakemake.",
    )
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="extra Snakemake arguments, after --")
    p.set_defaults(func=cmd_run_study)


def cmd_run_study(args) -> None:
    from taskvec.workflow.runner import run_study

    extra = args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else args.snakemake_args
    status = run_study(extra)
    if status:
        raise TaskvecError(
            f"the workflow stopped with exit status {status}",
            fix="read the failed job's log named above, fix its cause, and run it again",
        )
