"""One-off use: a task vector from a file of pairs, and applied to your own queries."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from taskvec import defaults, methods
from taskvec.commands._common import add_compute, add_method_settings, method_settings, positive

ORDER = 15  # where the group's subcommands come in `taskvec --help`
log = logging.getLogger("taskvec")

ONE_OFF_MODEL_HELP = (
    "a model directory, a packaged model (packaged:smollm2-135m; `taskvec models` lists them) or a "
    "Hugging Face id; the last two are converted once into $TASKVEC_CACHE (default ~/.cache/taskvec)"
)


def layer_choice(value: str):
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto or a block number, got {value!r}") from None


def strength_choice(value: str):
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto or a number, got {value!r}") from None


def add(sub) -> None:
    p = sub.add_parser(
        "vector",
        help="make a task vector from a file of input/output pairs",
        description="Extract theta, the task vector, from demonstrations of your own pairs (a JSON Lines file: "
        'one {"input": ..., "output": ...} per line; "outputs": [...] lists several valid answers). theta is the '
        "last token's residual stream after every block, averaged over the dummy queries of --contexts prompts "
        "of --k demonstrations each. With --layer auto (the default) a quarter of the pairs (at least 4) are "
        "held out and the block whose theta answers their bare queries best is chosen (ties: the earliest); the "
        "choice, the accuracy at every block, and the held-out accuracy of ICL and of the bare query go into the "
        "file's metadata, and a warning says so where no block beats the bare query. Writes a safetensors file. "
        "--method makes another method's vector from the same demonstration sets (the file records it, and "
        "`taskvec apply` applies it as its method does).",
    )
    p.add_argument("--model", required=True, help=ONE_OFF_MODEL_HELP)
    p.add_argument("--demos", required=True, type=Path, help="task file of input/output pairs (.jsonl or .csv)")
    p.add_argument("--layer", type=layer_choice, default="auto", help="auto, or the block to patch after (0-based)")
    p.add_argument("--out", required=True, type=Path, help="output .safetensors file")
    p.add_argument("--method", choices=methods.names(), default="task_vector", help=methods.help_text())
    p.add_argument(
        "--strength",
        type=strength_choice,
        default="auto",
        help="the scale of a method that adds or turns: auto (chosen on the held-out pairs from the method's grid, "
        "with the block; 1 where --layer is given) or a number",
    )
    group = p.add_argument_group("prompts")
    group.add_argument("--k", type=positive, default=defaults.K, help="demonstrations per context")
    group.add_argument(
        "--contexts", type=positive, default=defaults.CONTEXTS, help="demonstration sets theta is averaged over"
    )
    group.add_argument("--dummies", type=positive, default=defaults.DUMMIES, help="dummy queries per context")
    group.add_argument(
        "--demonstration-template", default=defaults.DEMONSTRATION, help="demonstration template ({x}, {y})"
    )
    group.add_argument(
        "--query-template", default=defaults.QUERY, help="query template ({x}); `apply --query` gives inputs"
    )
    group.add_argument(
        "--separator", default=defaults.SEPARATOR, help="text between demonstrations (and where answers end)"
    )
    group.add_argument(
        "--max-answer-tokens",
        type=positive,
        default=defaults.MAX_ANSWER_TOKENS,
        help="longest answer `apply` generates",
    )
    group.add_argument(
        "--scoring", choices=["exact", "prefix"], default="exact", help="first-token rule for --layer auto"
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the held-out pairs and the contexts")
    add_method_settings(p)
    add_compute(p)
    p.set_defaults(func=cmd_vector)

    p = sub.add_parser(
        "apply",
        help="patch a task vector into your own queries",
        description="Answer each query bare and with the task vector patched in (theta replaces the last "
        "token's residual stream after the vector's block), printing the two answers side by side. A query "
        "is an input: it is written with the vector's query template (example:{x}-> by default). Each answer "
        "is the greedy generation up to the format's separator.",
    )
    p.add_argument("--model", required=True, help=ONE_OFF_MODEL_HELP + "; it must be the vector's model")
    p.add_argument("--vector", required=True, type=Path, help="a file written by `taskvec vector`")
    p.add_argument("--query", action="append", default=[], help="an input to answer (repeatable)")
    p.add_argument("--query-file", type=Path, help="a text file of inputs, one per line")
    add_compute(p)
    p.set_defaults(func=cmd_apply)


def _hide_loading_bar(args) -> None:
    if args.no_progress:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # its weight-loading bar


def cmd_vector(args) -> None:
    from taskvec import api
    from taskvec.prompts import PromptFormat

    pairs = api.read_pairs(args.demos)
    fmt = PromptFormat(args.demonstration_template, args.query_template, args.separator, args.max_answer_tokens)
    fmt.validate()
    _hide_loading_bar(args)
    lm = api.load(args.model, args.device, args.dtype, args.threads)
    vector = api.task_vector(
        lm,
        pairs,
        layer=args.layer,
        k=args.k,
        contexts=args.contexts,
        dummies=args.dummies,
        fmt=fmt,
        scoring=args.scoring,
        seed=args.seed,
        batch_size=args.batch_size,
        source=args.demos.name,
        method=args.method,
        strength=args.strength,
        settings=method_settings(args).get(args.method),
    )
    vector.save(args.out)
    choice = vector.metadata["layer_choice"]
    made = "theta" if vector.method.name == "task_vector" else f"{vector.method.name} (strength {vector.strength:g})"
    blocks = len(vector.vectors)
    where = "at every block" if vector.layer < 0 else f"after block {vector.layer}"
    print(f"{args.out}: {made} {where} ({choice['how']}) of {blocks}, from {len(pairs)} pairs")
    if choice["how"] == "auto":
        chosen = choice["accuracy"]
        print(
            f"held-out queries ({len(choice['held_out'])}): "
            f"{'task vector' if vector.method.name == 'task_vector' else vector.method.name} {chosen:.0%}, "
            f"ICL {choice['icl_accuracy']:.0%}, bare query {choice['bare_accuracy']:.0%}"
        )


def cmd_apply(args) -> None:
    from taskvec import api
    from taskvec.errors import ArtifactError

    vector = api.TaskVector.load(args.vector)
    queries = list(args.query)
    if args.query_file is not None:
        if not args.query_file.is_file():
            raise ArtifactError(f"query file {args.query_file} does not exist", "give a text file, one input per line")
        queries += [line for line in args.query_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    _hide_loading_bar(args)
    lm = api.load(args.model, args.device, args.dtype, args.threads)
    predictions = api.apply(lm, vector, queries, args.batch_size, where=str(args.vector))
    width = max(5, *(len(p.query) for p in predictions))
    first = max(10, *(len(p.bare_first) for p in predictions))
    print("# first token: what the paper scores; answer: the greedy generation up to the separator")
    name = "the task vector" if vector.method.name == "task_vector" else vector.method.name
    print(f"# {name} {vector.method.where(vector.layer, vector.strength)}")
    name = "TV" if vector.method.operation == "replace" else "patched"
    print(f"{'query':{width}}  {'bare first':{first}}  {name + ' first':{first}}  bare answer | {name} answer")
    for p in predictions:
        print(f"{p.query:{width}}  {p.bare_first:{first}}  {p.patched_first:{first}}  {p.bare!r} | {p.patched!r}")
