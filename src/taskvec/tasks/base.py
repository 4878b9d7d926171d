"""The dataclasses every task builder returns, and the Parquet form of a built task."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import pyarrow as pa

from taskvec import store


@dataclasses.dataclass(frozen=True)
class Pair:
    """One input and every output the task accepts for it (the first is the canonical one)."""

    input: str
    outputs: tuple[str, ...]


def generated() -> list[dict]:
    from taskvec import __version__

    return [{"package": "taskvec", "registry": "generated from a seed", "version": __version__,
             "license": "Apache-2.0"}]


@dataclasses.dataclass(frozen=True)
class Task:
    """A task: a builder from a seed to pairs, and what the report says about it.

    ``one_token_output`` tasks keep only pairs whose answer is one token for the model's tokenizer, and
    a prediction must equal an answer; other tasks score the first token as a prefix of an answer.
    ``paper_task`` names the paper's task this one reproduces (None where there is no counterpart);
    ``note`` says how it differs from the paper's version.
    """

    name: str
    category: str
    description: str
    example: str
    build: Callable[[int], list[Pair]]
    one_token_output: bool = True
    sources: Callable[[], list[dict]] = generated
    paper_task: str | None = None
    note: str = ""


TASK_SCHEMA = pa.schema([("input", pa.string()), ("outputs", pa.list_(pa.string()))])


def pairs_to_table(pairs: Sequence[Pair]) -> pa.Table:
    return pa.table(
        {"input": [p.input for p in pairs], "outputs": [list(p.outputs) for p in pairs]}, schema=TASK_SCHEMA
    )


def write_task(task: Task, seed: int, path: str | os.PathLike[str]) -> int:
    """Build ``task`` with ``seed`` and write its pairs and provenance to ``path``; return the count."""
    pairs = task.build(seed)
    inputs = [p.input for p in pairs]
    if len(set(inputs)) != len(inputs):
        raise ValueError(f"task {task.name}: the builder produced duplicate inputs")
    metadata = {
        "task": task.name,
        "category": task.category,
        "seed": seed,
        "description": task.description,
        "sources": task.sources(),
        "one_token_output": task.one_token_output,
        "paper_task": task.paper_task,
        "note": task.note,
        "n_pairs": len(pairs),
    }
    store.write_parquet(pairs_to_table(pairs), path, metadata)
    return len(pairs)


def read_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    table = store.read_parquet(path, rebuild_hint="outside a study, `taskvec build-task` makes it")
    return [Pair(row["input"], tuple(row["outputs"])) for row in table.to_pylist()]
