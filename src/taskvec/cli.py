"""Command-line interface: one subcommand per pipeline step, usable by hand or from Snakemake. The
subcommands live in :mod:`taskvec.commands`, one module per group of steps."""

from __future__ import annotations

import argparse
import logging
import sys

from taskvec.errors import TaskvecError

log = logging.getLogger("taskvec")


def build_parser() -> argparse.ArgumentParser:
    from taskvec.commands import groups

    parser = argparse.ArgumentParser(
        prog="taskvec",
        description="Extract and patch in-context-learning task vectors (Hendel et al., 2023). "
        "Each subcommand is one step of the study; `taskvec <step> --help` explains it.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<step>")
    for group in groups():
        group.add(sub)
    return parser


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
        # the message says what is wrong, the fix what to do (and in a study); -v adds where it happened
        study = f"\n  in a study: {error.study_fix}" if error.study_fix else ""
        log.error("%s%s", error, study, exc_info=error if args.verbose else None)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
