"""Function vectors beside task vectors, with the controls and the distribution gap."""

from __future__ import annotations

import logging
from pathlib import Path

from taskvec.commands._common import MODEL_HELP, add_compute, compute, positive

ORDER = 45  # where the group's subcommands come in `taskvec --help`
log = logging.getLogger("taskvec")


def add(sub) -> None:
    p = sub.add_parser(
        "function-vectors",
        help="function vectors (top attention heads) against task vectors, with controls",
        description="For one model and the first sampling of each task: every attention head's mean "
        "output at the last token of clean ICL prompts and its average indirect effect on prompts with "
        "shuffled labels; the function vector (the top heads, averaged over tasks, summed in "
        "residual-stream space) added to bare queries after the block chosen on dev; shuffled-label "
        "ICL with and without it; controls at theta's layer (a random vector of theta's norm, another "
        "task's theta, the task's mean theta); the KL divergence from ICL's next-token distribution "
        "for TV and FV; and the FV of the top n heads for several n. Writes the predictions (--out) "
        "and every head's effect per task (--heads-out).",
    )
    p.add_argument("--model-dir", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--tasks", required=True, type=Path, nargs="+", help="task files (`taskvec build-task`)")
    p.add_argument("--prompts", required=True, type=Path, nargs="+", help="their prompts files (one sampling)")
    p.add_argument("--activations", required=True, type=Path, nargs="+", help="their activations files")
    p.add_argument("--results", required=True, type=Path, nargs="+", help="their results files")
    p.add_argument(
        "--n-heads",
        type=positive,
        help="heads in the function vector (default: the paper's 10 of GPT-J's 448, scaled to the model)",
    )
    p.add_argument(
        "--head-prompts",
        type=positive,
        default=10,
        help="dev prompts per task for the heads' mean outputs (clean) and indirect effects (shuffled labels)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the label shuffles and the random controls")
    p.add_argument("--out", required=True, type=Path, help="output Parquet file of predictions")
    p.add_argument("--heads-out", required=True, type=Path, help="output Parquet file of head effects")
    add_compute(p)
    p.set_defaults(func=cmd_function_vectors)


def cmd_function_vectors(args) -> None:
    from taskvec.studies.function_vectors.step import function_vectors_file

    function_vectors_file(
        args.model_dir,
        args.tasks,
        args.prompts,
        args.activations,
        args.results,
        args.out,
        args.heads_out,
        compute(args),
        n_heads=args.n_heads,
        head_prompts=args.head_prompts,
        seed=args.seed,
    )
