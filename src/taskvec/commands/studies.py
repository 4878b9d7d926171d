"""The extended studies' steps, one subcommand each, all built here from the studies' declarations
(:mod:`taskvec.studies`): the model and the task files, the first-sampling files the study reads, its
own settings (:class:`~taskvec.studies.base.Option`), the files it writes and the compute settings.
Nothing here names a study; a study's folder declares its subcommand and its step's entry."""

from __future__ import annotations

import argparse
import functools
import importlib
from pathlib import Path

from taskvec.commands._common import MODEL_HELP, add_compute, compute, positive

ORDER = 45  # where the group's subcommands come in `taskvec --help`

INPUT_HELP = {
    "prompts": "their prompts files (one sampling)",
    "activations": "their activations files",
    "results": "their results files",
}
KINDS = {"int": int, "positive": positive, "float": float, "text": str}


def add(sub) -> None:
    from taskvec import studies

    for study in studies.registry().values():
        p = sub.add_parser(study.command, help=study.help, description=study.description)
        p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
        p.add_argument("--tasks", required=True, type=Path, nargs="+", help="task files (`taskvec build-task`)")
        for name in study.inputs:
            p.add_argument(f"--{name}", required=True, type=Path, nargs="+", help=INPUT_HELP[name])
        for option in study.all_options():
            add_option(p, option)
        for data in study.data:
            p.add_argument(
                "--" + study.output_option(data).replace("_", "-"),
                dest=study.output_option(data),
                required=True,
                type=Path,
                help=f"output Parquet file ({data})",
            )
        add_compute(p)
        p.set_defaults(func=functools.partial(cmd_study, study.name))


def add_option(parser: argparse.ArgumentParser, option) -> None:
    """One declared setting as an option, its default in its help."""
    default = f" (default: {option.default})" if option.default is not None else ""
    if option.kind == "format":
        parser.add_argument(
            option.flag,
            dest=option.name,
            nargs=3,
            action="append",
            metavar=("NAME", "DEMONSTRATION", "SEPARATOR"),
            help=option.help,
        )
        return
    if option.kind not in KINDS:
        raise ValueError(f"option {option.name}: unknown kind {option.kind!r} (one of {', '.join(KINDS)}, format)")
    parser.add_argument(
        option.flag,
        dest=option.name,
        type=KINDS[option.kind],
        nargs="+" if option.many else None,
        default=list(option.default) if option.many and option.default is not None else option.default,
        help=option.help + default,
    )


def cmd_study(name: str, args) -> None:
    """Run the study's step: its declared entry, with the files, the compute and each setting."""
    from taskvec import studies

    study = studies.get(name)
    module, _, function = study.entry.partition(":")
    entry = getattr(importlib.import_module(module), function)
    entry(
        args.model_dir,
        args.tasks,
        **{name: getattr(args, name) for name in study.inputs},
        **{option: getattr(args, option) for option in map(study.output_option, study.data)},
        compute=compute(args),
        **{option.name: getattr(args, option.name) for option in study.all_options()},
    )
