"""The reports: the default study's and the extended studies' (HTML, tables, figures, metrics.json)."""

from __future__ import annotations

from pathlib import Path

ORDER = 60  # where the group's subcommands come in `taskvec --help`


def add(sub) -> None:
    p = sub.add_parser("report", help="build reports/ (HTML, tables, figures, metrics.json) from results files")
    p.add_argument(
        "results",
        nargs="+",
        type=Path,
        help="results files (from `taskvec evaluate`); each names its model, task and split seed in its metadata",
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
        "--benchmark-steps",
        nargs="*",
        default=None,
        help="the steps (folders of --benchmarks-dir) whose time the report gives (default: every folder)",
    )
    p.add_argument(
        "--prompts",
        nargs="*",
        type=Path,
        default=[],
        help="the prompts files of the results files, matched by their metadata (to diagnose ICL's errors)",
    )
    p.add_argument("--out", required=True, type=Path, help="report directory")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "extended-report",
        help="the extended studies' report (function vectors, how far the task vector travels)",
        description="Write the extended studies' report (index.html, metrics.json, tables, figures) from the "
        "study's results files and the files of `taskvec function-vectors` and `taskvec travel`, into --out (the "
        "study puts it in reports/extended, beside the main report, which it does not change).",
    )
    p.add_argument("results", nargs="+", type=Path, help="the study's results files (every task and sampling)")
    p.add_argument(
        "--analyses",
        nargs="+",
        type=Path,
        required=True,
        help="files of `taskvec function-vectors` (both), `taskvec travel` and `taskvec formats`, any models",
    )
    p.add_argument("--out", type=Path, default=Path("reports/extended"), help="output directory")
    p.set_defaults(func=cmd_extended_report)


def cmd_report(args) -> None:
    from taskvec.report.main import build_report

    index = build_report(args.results, args.out, args.analyses, args.benchmarks_dir, args.prompts, args.benchmark_steps)
    print(f"Report: {index.resolve()}")


def cmd_extended_report(args) -> None:
    from taskvec.studies.report import build_extended_report

    index = build_extended_report(args.results, args.analyses, args.out)
    print(f"Extended report: {index.resolve()}")
