"""Prompt format, seeded sampling of the baseline/dev/test splits, and tokenizer filtering."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from collections.abc import Sequence

import pyarrow as pa

from taskvec import store
from taskvec.tasks import Pair
from taskvec.tasks.base import read_pairs

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    """How demonstrations and the query are written. ``{x}`` and ``{y}`` are the placeholders."""

    demonstration: str = "example:{x}->{y}"
    query: str = "example:{x}->"
    separator: str = "\n"

    def render(self, demonstrations: Sequence[tuple[str, str]], query: str) -> str:
        parts = [self.demonstration.format(x=x, y=y) for x, y in demonstrations]
        parts.append(self.query.format(x=query))
        return self.separator.join(parts)

    def validate(self) -> None:
        for field, template, needed in (("demonstration", self.demonstration, ("{x}", "{y}")),
                                        ("query", self.query, ("{x}",))):
            missing = [n for n in needed if n not in template]
            if missing:
                raise ValueError(f"prompt {field} template {template!r} lacks {' and '.join(missing)}")


@dataclasses.dataclass(frozen=True)
class SplitSizes:
    k: int = 5
    baseline: int = 100
    dev: int = 50
    test: int = 50
    dummies: int = 2


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One evaluation item: demonstrations, the query and its answers, and the dummy queries used
    to extract the task vector (never the query, never a demonstration)."""

    split: str
    index: int
    demonstrations: tuple[tuple[str, str], ...]
    query: str
    answers: tuple[str, ...]
    dummies: tuple[str, ...]


PROMPT_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("index", pa.int32()),
        ("demo_inputs", pa.list_(pa.string())),
        ("demo_outputs", pa.list_(pa.string())),
        ("query", pa.string()),
        ("answers", pa.list_(pa.string())),
        ("dummies", pa.list_(pa.string())),
    ]
)


def single_token_pairs(pairs: Sequence[Pair], tokenizer) -> list[Pair]:
    """Keep the pairs whose outputs are one token for ``tokenizer`` (dropping multi-token outputs)."""
    kept = []
    for pair in pairs:
        outputs = tuple(o for o in pair.outputs if len(tokenizer.encode(o, add_special_tokens=False)) == 1)
        if outputs:
            kept.append(Pair(pair.input, outputs))
    return kept


def sample_prompts(pairs: Sequence[Pair], sizes: SplitSizes, seed: int) -> list[Prompt]:
    """Sample the baseline, dev and test splits from ``pairs``, deterministically from ``seed``.

    Each dev/test prompt draws k + 1 + dummies distinct pairs: the demonstrations, the query and the
    dummy queries. Baseline prompts are bare queries (no demonstrations).
    """
    needed = sizes.k + 1 + sizes.dummies
    if len(pairs) < needed:
        raise ValueError(
            f"only {len(pairs)} usable pairs, but a prompt needs {needed} distinct ones "
            f"(k={sizes.k} demonstrations + 1 query + {sizes.dummies} dummies); lower k or add pairs"
        )
    prompts: list[Prompt] = []
    rng = random.Random(f"baseline:{seed}")
    for index in range(sizes.baseline):
        query = rng.choice(pairs)
        prompts.append(Prompt("baseline", index, (), query.input, query.outputs, ()))
    for split, count in (("dev", sizes.dev), ("test", sizes.test)):
        rng = random.Random(f"{split}:{seed}")
        for index in range(count):
            chosen = rng.sample(pairs, needed)
            demos = tuple((p.input, p.outputs[0]) for p in chosen[: sizes.k])
            query = chosen[sizes.k]
            dummies = tuple(p.input for p in chosen[sizes.k + 1 :])
            prompts.append(Prompt(split, index, demos, query.input, query.outputs, dummies))
    return prompts


def prompts_to_table(prompts: Sequence[Prompt]) -> pa.Table:
    return pa.table(
        {
            "split": [p.split for p in prompts],
            "index": [p.index for p in prompts],
            "demo_inputs": [[x for x, _ in p.demonstrations] for p in prompts],
            "demo_outputs": [[y for _, y in p.demonstrations] for p in prompts],
            "query": [p.query for p in prompts],
            "answers": [list(p.answers) for p in prompts],
            "dummies": [list(p.dummies) for p in prompts],
        },
        schema=PROMPT_SCHEMA,
    )


def read_prompts(path: str | os.PathLike[str]) -> tuple[list[Prompt], dict]:
    table = store.read_parquet(path, rebuild_hint="outside a study, `taskvec run-task` or `make-prompts` makes it")
    prompts = [
        Prompt(
            row["split"],
            row["index"],
            tuple(zip(row["demo_inputs"], row["demo_outputs"])),
            row["query"],
            tuple(row["answers"]),
            tuple(row["dummies"]),
        )
        for row in table.to_pylist()
    ]
    return prompts, store.parquet_metadata(table)


def build_prompts(task_file: str | os.PathLike[str], tokenizer, fmt: PromptFormat, sizes: SplitSizes,
                  seed: int) -> tuple[list[Prompt], dict]:
    """Filter a built task for a tokenizer and sample the splits; returns the prompts and their provenance."""
    fmt.validate()
    pairs = read_pairs(task_file)
    task_meta = store.parquet_metadata(task_file)
    usable = single_token_pairs(pairs, tokenizer) if task_meta.get("one_token_output", True) else list(pairs)
    try:
        prompts = sample_prompts(usable, sizes, seed)
    except ValueError as error:
        raise ValueError(f"task {task_meta.get('task')} ({task_file}), after keeping the pairs whose answers this "
                         f"model's tokenizer can score: {error} (sizes.k and sizes.dummies in params.yaml)") from None
    metadata = {
        "task": task_meta,
        "n_pairs": len(pairs),
        "n_pairs_usable": len(usable),
        "seed": seed,
        "sizes": dataclasses.asdict(sizes),
        "format": dataclasses.asdict(fmt),
    }
    log.info("%s: %d of %d pairs usable; %d prompts", task_meta.get("task"), len(usable), len(pairs), len(prompts))
    return prompts, metadata


def write_prompts(prompts: Sequence[Prompt], metadata: dict, out: str | os.PathLike[str]) -> None:
    store.write_parquet(prompts_to_table(prompts), out, metadata)


def make_prompt_file(task_file: str | os.PathLike[str], model_dir: str | os.PathLike[str],
                     out: str | os.PathLike[str], fmt: PromptFormat, sizes: SplitSizes, seed: int) -> None:
    """Filter a built task for a model's tokenizer, sample the splits, and write them with provenance."""
    from taskvec.models import load_tokenizer

    prompts, metadata = build_prompts(task_file, load_tokenizer(model_dir), fmt, sizes, seed)
    write_prompts(prompts, metadata, out)
