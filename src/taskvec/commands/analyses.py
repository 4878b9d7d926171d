"""Analyses over a model's tasks: conflicting tasks, robustness, vocabulary projection."""

from __future__ import annotations

import logging
from pathlib import Path

from taskvec.commands._common import MODEL_HELP, add_compute, add_theta_inputs, compute, matching, pair
from taskvec.errors import ConfigError

ORDER = 40  # where the group's subcommands come in `taskvec --help`
log = logging.getLogger("taskvec")


def add(sub) -> None:
    p = sub.add_parser(
        "conflicting-tasks",
        help="ICL prompts of task A with task B's theta patched in",
        description="For each pair A:B, run A's test prompts (its demonstrations and query) with the "
        "task vector of B patched in at B's chosen layer, and score the predictions against A's and "
        "B's answers. Reads each task's files of one model and split seed (matched by the task their "
        "metadata names, in any order); writes one Parquet file.",
    )
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--tasks", required=True, type=Path, nargs="+", help="task files (`taskvec build-task`)")
    p.add_argument("--prompts", required=True, type=Path, nargs="+", help="their prompts files")
    p.add_argument("--activations", required=True, type=Path, nargs="+", help="their activations files")
    p.add_argument("--results", required=True, type=Path, nargs="+", help="their results files")
    p.add_argument(
        "--pairs",
        nargs="+",
        required=True,
        metavar="A:B",
        type=pair,
        help="task pairs, for example next_letter:to_upper",
    )
    p.add_argument("--out", required=True, type=Path, help="output Parquet file")
    add_compute(p)
    p.set_defaults(func=cmd_conflicting_tasks)

    p = sub.add_parser(
        "robustness",
        help="t-SNE, distances and task identification of the task vectors",
        description="Compare every dev and test task vector of a model's tasks at one layer (the "
        "best of the mean dev curve): t-SNE coordinates, within- and across-task cosine distance "
        "histograms, and leave-one-out nearest-centroid accuracy. Writes one Parquet file.",
    )
    add_theta_inputs(p)
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser(
        "vocabulary",
        help="top tokens of each task's mean theta through the unembedding",
        description="Read each task's mean task vector at its chosen layer and at the last layer "
        "through the final norm and the unembedding, keep the top tokens, and judge whether they name "
        "the task's outputs (the share of them that are the task's answer tokens, against the same "
        "share for the other tasks' theta). Writes one Parquet file.",
    )
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    add_theta_inputs(p)
    p.add_argument("--prompts", required=True, type=Path, nargs="+", help="the matching prompts files (answers)")
    add_compute(p)
    p.set_defaults(func=cmd_vocabulary)


def cmd_conflicting_tasks(args) -> None:
    from taskvec.analysis.conflicting import conflicting_tasks_file

    conflicting_tasks_file(
        args.model_dir, args.tasks, args.prompts, args.activations, args.results, args.pairs, args.out, compute(args)
    )


def cmd_robustness(args) -> None:
    from taskvec.analysis.robustness import robustness_file

    matching(args)
    summary = robustness_file(args.activations, args.results, args.out)
    log.info(
        "layer %d: nearest-centroid accuracy %.2f over %d task vectors of %d tasks",
        summary["layer"],
        summary["nearest_centroid_accuracy"],
        summary["n_vectors"],
        summary["n_tasks"],
    )


def cmd_vocabulary(args) -> None:
    from taskvec.analysis.vocabulary import vocabulary_file

    matching(args)
    if len(args.prompts) != len(args.activations):
        raise ConfigError(
            f"give one prompts file per activations file ({len(args.activations)} activations, "
            f"{len(args.prompts)} prompts)"
        )
    vocabulary_file(args.model_dir, args.activations, args.results, args.prompts, args.out, compute(args))
