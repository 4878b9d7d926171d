"""The extended studies: how far a task vector travels across prompt formats."""

from __future__ import annotations

from pathlib import Path

from taskvec.commands._common import MODEL_HELP, add_compute, compute

ORDER = 47  # where the group's subcommands come in `taskvec --help`


def add(sub) -> None:
    p = sub.add_parser(
        "formats",
        help="ICL and the task vector in several prompt formats, and theta carried from one format to another",
        description="For one model and the first sampling of each task, on the study's test prompts and at the "
        "layer the study chose on dev: each prompt written in each --format (the same demonstrations, query and "
        "dummy queries), its ICL prediction and theta; the bare query of each format unpatched and with every "
        "format's theta patched in (a format x format transfer matrix). A format's query is its demonstration "
        "template up to {y} without the spaces before it; a one-token task keeps, per format, the answers that "
        "are one token where the format writes them. Writes one Parquet file of predictions.",
    )
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--tasks", required=True, type=Path, nargs="+", help="task files (`taskvec build-task`)")
    p.add_argument("--prompts", required=True, type=Path, nargs="+", help="their prompts files (one sampling)")
    p.add_argument("--results", required=True, type=Path, nargs="+", help="their results files")
    p.add_argument(
        "--format",
        dest="formats",
        nargs=3,
        action="append",
        metavar=("NAME", "DEMONSTRATION", "SEPARATOR"),
        help="a prompt format: its name, demonstration template ending in {y} (e.g. 'Q: {x}<newline>A: {y}', with a "
        "real newline) and the text between demonstrations; repeat for each format (default: the paper's "
        "'example:{x}->{y}', '{x} -> {y}', 'Q: {x}<newline>A: {y}', 'input: {x} output: {y}' and '{x}<tab>{y}')",
    )
    p.add_argument("--out", required=True, type=Path, help="output Parquet file of predictions")
    add_compute(p)
    p.set_defaults(func=cmd_formats)


def cmd_formats(args) -> None:
    from taskvec.studies.formats.step import DEFAULT_FORMATS, Format, formats_file

    formats = [Format(*spec) for spec in args.formats] if args.formats else list(DEFAULT_FORMATS)
    formats_file(args.model_dir, args.tasks, args.prompts, args.results, args.out, compute(args), formats)
