"""The dataclasses every task builder returns, and the Parquet form of a built task."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import pyarrow as pa

from taskvec import store
from taskvec.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Pair:
    """One input and every output the task accepts for it (the first is the canonical one)."""

    input: str
    outputs: tuple[str, ...]


def generated() -> list[dict]:
    from taskvec import __version__

    return [
        {"package": "taskvec", "registry": "generated from a seed", "version": __version__, "license": "Apache-2.0"}
    ]


LEADING_SPACE_CHOICES = ("auto", "on", "off")
# the paper's first-token rules (taskvec.scoring applies them)
FIRST_TOKEN_RULES = ("exact", "prefix")


@dataclasses.dataclass(frozen=True)
class TaskRules:
    """How a task's pairs are rendered and scored for a model, as the paper's code does it.

    ``one_token``: keep only pairs with an answer that is one token for the model's tokenizer (the
    paper's mapping tasks: linguistic and translation). ``leading_space``: write input and answer with
    a space before them (`example: walk-> walked`); ``auto`` is the paper's rule, which takes that
    variant when it keeps at least 70% as many one-token pairs as the plain one. ``scoring``: the
    paper's first-token rule, ``exact`` (the stripped token equals an answer) or ``prefix`` (either is
    a prefix of the other: knowledge tasks). The strict metric (greedy generation to the separator,
    exact match) is computed for every task beside it. See :mod:`taskvec.scoring`.
    """

    one_token: bool = False
    leading_space: str = "off"
    scoring: str = "exact"

    def __post_init__(self) -> None:
        if self.leading_space not in LEADING_SPACE_CHOICES:
            raise ConfigError(
                f"leading_space must be one of {', '.join(LEADING_SPACE_CHOICES)}, got {self.leading_space!r}"
            )
        if self.scoring not in FIRST_TOKEN_RULES:
            raise ConfigError(f"scoring must be one of {', '.join(FIRST_TOKEN_RULES)}, got {self.scoring!r}")

    def with_settings(self, **settings) -> TaskRules:
        """These rules with the settings that are not None replaced (params.yaml overrides)."""
        return dataclasses.replace(self, **{k: v for k, v in settings.items() if v is not None})


#: The paper's rules by kind of task: mapping tasks (linguistic, translation) are filtered to one-token
#: answers with the leading-space rule; knowledge tasks keep every pair and score a prefix either way;
#: algorithmic tasks are generated with one-token answers and scored exactly.
MAPPING_RULES = TaskRules(one_token=True, leading_space="auto", scoring="exact")
KNOWLEDGE_RULES = TaskRules(one_token=False, leading_space="off", scoring="prefix")
ALGORITHMIC_RULES = TaskRules(one_token=False, leading_space="off", scoring="exact")


@dataclasses.dataclass(frozen=True)
class Task:
    """A task: a builder from a seed to pairs, its rendering and scoring rules, and what the report
    says about it.

    ``paper_task`` names the paper's task this one reproduces (None where there is no counterpart);
    ``differs`` says how it differs from the paper's version (source, size, format, filter).
    """

    name: str
    category: str
    description: str
    example: str
    build: Callable[[int], list[Pair]]
    rules: TaskRules = ALGORITHMIC_RULES
    sources: Callable[[], list[dict]] = generated
    paper_task: str | None = None
    differs: str = ""


TASK_SCHEMA = pa.schema([("input", pa.string()), ("outputs", pa.list_(pa.string()))])


def pairs_to_table(pairs: Sequence[Pair]) -> pa.Table:
    return pa.table(
        {"input": [p.input for p in pairs], "outputs": [list(p.outputs) for p in pairs]}, schema=TASK_SCHEMA
    )


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """A built task's provenance, as its Parquet file stores it (and every file made from it)."""

    name: str
    category: str
    seed: int
    description: str
    sources: tuple[dict, ...]
    rules: TaskRules
    paper_task: str | None
    differs: str
    n_pairs: int

    @classmethod
    def of(cls, task: Task, seed: int, rules: TaskRules, n_pairs: int) -> TaskInfo:
        return cls(
            task.name,
            task.category,
            seed,
            task.description,
            tuple(task.sources()),
            rules,
            task.paper_task,
            task.differs,
            n_pairs,
        )

    def to_dict(self) -> dict:
        return {
            "task": self.name,
            "category": self.category,
            "seed": self.seed,
            "description": self.description,
            "sources": list(self.sources),
            "rules": dataclasses.asdict(self.rules),
            "paper_task": self.paper_task,
            "differs": self.differs,
            "n_pairs": self.n_pairs,
        }

    @classmethod
    def from_dict(cls, data: dict) -> TaskInfo:
        return cls(
            data["task"],
            data["category"],
            int(data["seed"]),
            data["description"],
            tuple(data["sources"]),
            TaskRules(**data["rules"]),
            data.get("paper_task"),
            data.get("differs", ""),
            int(data["n_pairs"]),
        )

    @property
    def source_versions(self) -> str:
        return ", ".join(f"{s['package']} {s['version']}" for s in self.sources)


def write_task(task: Task, seed: int, path: str | os.PathLike[str], rules: TaskRules | None = None) -> int:
    """Build ``task`` with ``seed`` and write its pairs, rules and provenance to ``path``; return the
    count. ``rules`` replaces the task's own (settings from params.yaml)."""
    pairs = task.build(seed)
    inputs = [p.input for p in pairs]
    if len(set(inputs)) != len(inputs):
        raise ValueError(f"task {task.name}: the builder produced duplicate inputs")
    info = TaskInfo.of(task, seed, rules or task.rules, len(pairs))
    store.write_parquet(pairs_to_table(pairs), path, info.to_dict())
    return len(pairs)


def read_task_info(path: str | os.PathLike[str]) -> TaskInfo:
    """The provenance of a built task's file."""
    store.read_parquet(path, rebuild_hint="`taskvec build-task` makes it")
    return TaskInfo.from_dict(store.parquet_metadata(path))


def read_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    table = store.read_parquet(path, rebuild_hint="`taskvec build-task` makes it")
    return [Pair(row["input"], tuple(row["outputs"])) for row in table.to_pylist()]
