"""What the subcommands share: compute and prompt settings, argument types, help texts."""

from __future__ import annotations

import argparse
from pathlib import Path

from taskvec import defaults
from taskvec.errors import ConfigError

MODEL_HELP = "model directory written by `taskvec convert-model`"
MODEL_NAME_HELP = (
    "the model's name in the files' metadata and the report (default: its packaged name, the last part "
    "of its Hugging Face id, or its directory's name)"
)


DTYPES = ("auto", "float32", "bfloat16", "float16")


def device(value: str) -> str:
    """A device argument: cpu, cuda, cuda:N or auto."""
    kind, _, index = value.partition(":")
    if value in ("auto", "cpu", "cuda") or (kind == "cuda" and index.isdigit()):
        return value
    raise argparse.ArgumentTypeError(f"a device is cpu, cuda, cuda:N or auto, got {value!r}")


def add_compute(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("compute")
    group.add_argument(
        "--device", type=device, default=defaults.DEVICE, help="cpu, cuda, cuda:N or auto (cuda if available)"
    )
    group.add_argument(
        "--dtype",
        default=defaults.DTYPE,
        choices=DTYPES,
        help="weights and activations dtype; auto is bfloat16 on GPU, float32 on CPU",
    )
    group.add_argument("--batch-size", type=positive, default=defaults.BATCH_SIZE, help="prompts per forward pass")
    group.add_argument(
        "--threads", type=int, default=defaults.THREADS, help="CPU threads for torch (0: torch's default)"
    )
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")


def compute(args):
    from taskvec.compute import Compute

    return Compute(args.device, args.dtype, args.batch_size, args.threads, progress=not args.no_progress)


def positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def add_prompt_settings(parser: argparse.ArgumentParser, seed: bool = True) -> None:
    group = parser.add_argument_group("prompts")
    if seed:
        group.add_argument("--seed", type=int, default=0, help="seed for sampling the splits")
    group.add_argument("--k", type=positive, default=defaults.K, help="demonstrations per prompt")
    group.add_argument("--n-baseline", type=positive, default=defaults.BASELINE, help="bare queries for the baseline")
    group.add_argument("--n-dev", type=positive, default=defaults.DEV, help="prompts for choosing the layer")
    group.add_argument("--n-test", type=positive, default=defaults.TEST, help="prompts for the reported accuracies")
    group.add_argument(
        "--n-dummies", type=positive, default=defaults.DUMMIES, help="dummy queries averaged into each task vector"
    )
    group.add_argument("--demonstration", default=defaults.DEMONSTRATION, help="demonstration template")
    group.add_argument("--query", default=defaults.QUERY, help="query template")
    group.add_argument("--separator", default=defaults.SEPARATOR, help="text between demonstrations")
    group.add_argument(
        "--max-answer-tokens",
        type=positive,
        default=defaults.MAX_ANSWER_TOKENS,
        help="the strict metric's generation stops at the separator or after this many tokens",
    )


def add_theta_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--activations", required=True, type=Path, nargs="+", help="activations files of one model")
    parser.add_argument("--results", required=True, type=Path, nargs="+", help="the matching results files")
    parser.add_argument("--out", required=True, type=Path, help="output Parquet file")


def pair(value: str) -> tuple[str, str]:
    first, sep, second = value.partition(":")
    if not sep or not first or not second:
        raise argparse.ArgumentTypeError(f"a pair is TASK_A:TASK_B, got {value!r}")
    return first, second


def prompt_settings(args):
    from taskvec.prompts import PromptFormat, SplitSizes

    return (
        PromptFormat(args.demonstration, args.query, args.separator, args.max_answer_tokens),
        SplitSizes(args.k, args.n_baseline, args.n_dev, args.n_test, args.n_dummies),
    )


def model_name_of(args) -> str:
    from taskvec.models import model_name

    return args.model_name or model_name(args.model_dir)


def matching(args) -> None:
    if len(args.activations) != len(args.results):
        raise ConfigError(
            f"give one results file per activations file ({len(args.activations)} activations, "
            f"{len(args.results)} results)"
        )


def add_method_settings(parser: argparse.ArgumentParser) -> None:
    """Every registered method's own settings as options (``--<setting>``: the names are one
    namespace, as in params.yaml's ``methods``), from the registry: a method's module declares them,
    nothing here names one."""
    from taskvec import methods

    group = parser.add_argument_group("method settings (the authors' defaults)")
    for field, (method, kind, default, text) in methods.settings().items():
        group.add_argument(
            f"--{field}".replace("_", "-"),
            dest=f"setting__{method.name}__{field}",
            type=positive if kind is int else kind,
            default=default,
            help=f"{method.label}: {text} (default: %(default)s)",
        )


def method_settings(args) -> dict[str, dict]:
    """The settings :func:`add_method_settings` read, by method."""
    settings: dict[str, dict] = {}
    for key, value in vars(args).items():
        if key.startswith("setting__"):
            _, name, field = key.split("__")
            settings.setdefault(name, {})[field] = value
    return settings
