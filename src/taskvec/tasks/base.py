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


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    category: str
    description: str
    example: str
    build: Callable[[int], list[Pair]]
    one_token_output: bool = True
    source: str = "generated"


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
        "source": task.source,
        "one_token_output": task.one_token_output,
        "n_pairs": len(pairs),
    }
    store.write_parquet(pairs_to_table(pairs), path, metadata)
    return len(pairs)


def read_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    table = store.read_parquet(path, rebuild_hint="Rebuild it with `taskvec build-task`.")
    return [Pair(row["input"], tuple(row["outputs"])) for row in table.to_pylist()]
