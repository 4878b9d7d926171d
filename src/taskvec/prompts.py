"""Prompt format, seeded sampling of the baseline/dev/test splits, and the per-model rendering rules:
the one-token filter and the leading-space choice, as the paper's code applies them."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from collections.abc import Sequence

import pyarrow as pa

from taskvec import defaults, store
from taskvec.errors import ConfigError
from taskvec.tasks import Pair
from taskvec.tasks.base import TaskInfo, TaskRules, read_pairs, read_task_info

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    """How demonstrations and the query are written. ``{x}`` and ``{y}`` are the placeholders.
    ``max_answer_tokens`` bounds the strict metric's generation (it stops earlier at the separator)."""

    demonstration: str = defaults.DEMONSTRATION
    query: str = defaults.QUERY
    separator: str = defaults.SEPARATOR
    max_answer_tokens: int = defaults.MAX_ANSWER_TOKENS

    def render(self, demonstrations: Sequence[tuple[str, str]], query: str) -> str:
        parts = [self.demonstration.format(x=x, y=y) for x, y in demonstrations]
        parts.append(self.query.format(x=query))
        return self.separator.join(parts)

    def validate(self) -> None:
        for field, template, needed in (
            ("demonstration", self.demonstration, ("{x}", "{y}")),
            ("query", self.query, ("{x}",)),
        ):
            missing = [n for n in needed if n not in template]
            if missing:
                raise ConfigError(f"prompt {field} template {template!r} lacks {' and '.join(missing)}")


@dataclasses.dataclass(frozen=True)
class SplitSizes:
    k: int = defaults.K
    baseline: int = defaults.BASELINE
    dev: int = defaults.DEV
    test: int = defaults.TEST
    dummies: int = defaults.DUMMIES


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One evaluation item: demonstrations, the query and its answers, and the dummy queries used
    to extract the task vector (never the query, never a demonstration).

    ``answers`` are what the paper's first-token rule scores against (for a task filtered to one-token
    answers, only those); ``all_answers`` every answer the task lists, for the strict metric."""

    split: str
    index: int
    demonstrations: tuple[tuple[str, str], ...]
    query: str
    answers: tuple[str, ...]
    dummies: tuple[str, ...]
    all_answers: tuple[str, ...] = ()

    @property
    def strict_answers(self) -> tuple[str, ...]:
        return self.all_answers or self.answers


PROMPT_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("index", pa.int32()),
        ("demo_inputs", pa.list_(pa.string())),
        ("demo_outputs", pa.list_(pa.string())),
        ("query", pa.string()),
        ("answers", pa.list_(pa.string())),
        ("dummies", pa.list_(pa.string())),
        ("all_answers", pa.list_(pa.string())),
    ]
)


@dataclasses.dataclass(frozen=True)
class UsablePair:
    """A pair as a model's prompts use it: ``answers`` are scored by the first-token rule (the first is
    shown in demonstrations), ``all_answers`` by the strict metric."""

    input: str
    answers: tuple[str, ...]
    all_answers: tuple[str, ...]

    @classmethod
    def of(cls, pair: Pair) -> UsablePair:
        return cls(pair.input, pair.outputs, pair.outputs)


# The paper's code asks whether `!` + text is two tokens: the text as one token after other text,
# where it stands in a prompt. Here: the tokens of `!` + text are those of `!` and exactly one more.
ONE_TOKEN_PROBE = "!"
LEADING_SPACE_KEEPS = 0.7  # the paper's rule: the leading-space variant if it keeps >= 70% as many pairs


def _after_probe(tokenizer, text: str) -> list[int] | None:
    probe = tokenizer.encode(ONE_TOKEN_PROBE, add_special_tokens=False)
    ids = tokenizer.encode(ONE_TOKEN_PROBE + text, add_special_tokens=False)
    return ids[len(probe) :] if ids[: len(probe)] == probe else None


def is_one_token(tokenizer, text: str) -> bool:
    """Whether ``text`` is a single token where it follows other text in a prompt."""
    rest = _after_probe(tokenizer, text)
    return rest is not None and len(rest) == 1


def first_token_id(tokenizer, text: str) -> int:
    """The id of the first token of ``text`` where it follows other text in a prompt."""
    rest = _after_probe(tokenizer, text)
    return int(rest[0]) if rest else int(tokenizer.encode(text, add_special_tokens=False)[0])


def one_token_pairs(pairs: Sequence[Pair], tokenizer, leading_space: bool = False) -> list[UsablePair]:
    """The pairs with at least one answer that is one token for ``tokenizer``; their first-token
    answers are those, their strict answers all of them. With ``leading_space`` every input and
    answer is written with a space before it."""
    space = " " if leading_space else ""
    kept = []
    for pair in pairs:
        outputs = tuple(space + o for o in pair.outputs)
        answers = tuple(o for o in outputs if is_one_token(tokenizer, o))
        if answers:
            kept.append(UsablePair(space + pair.input, answers, outputs))
    return kept


def apply_rules(pairs: Sequence[Pair], tokenizer, rules: TaskRules) -> tuple[list[UsablePair], dict]:
    """The pairs a model's prompts draw from under ``rules``, and how they were chosen.

    As the paper's code: a one-token task keeps the pairs with a one-token answer, written with a
    leading space if that keeps at least 70% as many pairs as without (``auto``), or as forced."""
    if rules.one_token:
        plain = one_token_pairs(pairs, tokenizer)
        spaced = one_token_pairs(pairs, tokenizer, leading_space=True) if rules.leading_space != "off" else []
        if rules.leading_space == "auto":
            use_space = len(spaced) >= LEADING_SPACE_KEEPS * len(plain)
        else:
            use_space = rules.leading_space == "on"
        usable = spaced if use_space else plain
        counts = {
            "one_token_pairs_plain": len(plain),
            "one_token_pairs_leading_space": len(spaced) if rules.leading_space != "off" else None,
        }
    else:
        use_space = rules.leading_space == "on"
        space = " " if use_space else ""
        usable = [
            UsablePair(space + p.input, tuple(space + o for o in p.outputs), tuple(space + o for o in p.outputs))
            for p in pairs
        ]
        counts = {}
    return usable, {"leading_space": use_space, **counts}


def sample_prompts(pairs: Sequence[UsablePair | Pair], sizes: SplitSizes, seed: int) -> list[Prompt]:
    """Sample the baseline, dev and test splits from ``pairs``, deterministically from ``seed``.

    Each dev/test prompt draws k + 1 + dummies distinct pairs: the demonstrations, the query and the
    dummy queries. Baseline prompts are bare queries (no demonstrations), drawn with replacement as
    in the paper's code (so a task of 25 pairs repeats queries: the report's interval counts each
    distinct query once).
    """
    pairs = [p if isinstance(p, UsablePair) else UsablePair.of(p) for p in pairs]
    needed = sizes.k + 1 + sizes.dummies
    if len(pairs) < needed:
        raise ConfigError(
            f"only {len(pairs)} usable pairs, but a prompt needs {needed} distinct ones "
            f"(k={sizes.k} demonstrations + 1 query + {sizes.dummies} dummies); lower k or add pairs"
        )
    prompts: list[Prompt] = []
    rng = random.Random(f"baseline:{seed}")
    for index in range(sizes.baseline):
        query = rng.choice(pairs)
        prompts.append(Prompt("baseline", index, (), query.input, query.answers, (), query.all_answers))
    for split, count in (("dev", sizes.dev), ("test", sizes.test)):
        rng = random.Random(f"{split}:{seed}")
        for index in range(count):
            chosen = rng.sample(pairs, needed)
            demos = tuple((p.input, p.answers[0]) for p in chosen[: sizes.k])
            query = chosen[sizes.k]
            dummies = tuple(p.input for p in chosen[sizes.k + 1 :])
            prompts.append(Prompt(split, index, demos, query.input, query.answers, dummies, query.all_answers))
    return prompts


def demonstration_sets(pairs: Sequence[tuple[str, str]], k: int, dummies: int, count: int, seed: str) -> list[Prompt]:
    """``count`` demonstration sets (split ``context``) drawn from ``pairs`` (input, output): each of
    ``k`` demonstrations and ``dummies`` dummy queries, distinct within a set, drawn with a generator
    seeded by the string ``seed``. Each set's query is its first dummy query, with that pair's output
    as its answer: a labelled prompt for the methods that score the set (the function vector's head
    effects)."""
    rng = random.Random(seed)
    sets = []
    for index in range(count):
        chosen = rng.sample(list(pairs), k + dummies)
        query, answer = chosen[k]
        sets.append(Prompt("context", index, tuple(chosen[:k]), query, (answer,), tuple(x for x, _ in chosen[k:])))
    return sets


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
            "all_answers": [list(p.strict_answers) for p in prompts],
        },
        schema=PROMPT_SCHEMA,
    )


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """The metadata of a prompts, activations or results file: which model (``model_name``, the
    study's name for it), task and split seed it belongs to, how its prompts were made, and, once a
    model has run on them, the model's provenance and how it ran. Nothing is inferred from paths."""

    model_name: str
    task: TaskInfo
    seed: int
    format: PromptFormat
    sizes: SplitSizes
    n_pairs: int
    n_pairs_usable: int
    rendering: dict
    model: dict | None = None  # the model directory's provenance (taskvec convert-model)
    n_layers: int | None = None
    hidden_size: int | None = None
    dtype: str | None = None
    batch_size: int | None = None  # the batch size the model ran at (after any out-of-memory back-off)

    @property
    def leading_space(self) -> bool:
        return bool(self.rendering.get("leading_space", False))

    def ran(self, lm, n_layers: int, hidden_size: int, batch_size: int) -> RunInfo:
        """This record with how ``lm`` ran on the prompts."""
        return dataclasses.replace(
            self,
            model=lm.provenance,
            n_layers=n_layers,
            hidden_size=hidden_size,
            dtype=lm.dtype_name,
            batch_size=batch_size,
        )

    def to_dict(self) -> dict:
        data = {
            "model_name": self.model_name,
            "task": self.task.to_dict(),
            "seed": self.seed,
            "format": dataclasses.asdict(self.format),
            "sizes": dataclasses.asdict(self.sizes),
            "n_pairs": self.n_pairs,
            "n_pairs_usable": self.n_pairs_usable,
            "rendering": self.rendering,
        }
        if self.model is not None:
            data.update(
                model=self.model,
                n_layers=self.n_layers,
                hidden_size=self.hidden_size,
                dtype=self.dtype,
                batch_size=self.batch_size,
            )
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RunInfo:
        return cls(
            data["model_name"],
            TaskInfo.from_dict(data["task"]),
            int(data["seed"]),
            PromptFormat(**data["format"]),
            SplitSizes(**data["sizes"]),
            int(data["n_pairs"]),
            int(data["n_pairs_usable"]),
            dict(data["rendering"]),
            data.get("model"),
            data.get("n_layers"),
            data.get("hidden_size"),
            data.get("dtype"),
            data.get("batch_size"),
        )

    @classmethod
    def of_table(cls, table: pa.Table, path: str | os.PathLike[str]) -> RunInfo:
        data = store.parquet_metadata(table)
        if "model_name" not in data:
            raise store.ArtifactError(
                f"{path} lacks taskvec's run metadata (made by an older taskvec?)",
                fix="delete it and make it again",
            )
        return cls.from_dict(data)


def read_prompts(path: str | os.PathLike[str]) -> tuple[list[Prompt], RunInfo]:
    table = store.read_parquet(path, rebuild_hint="`taskvec make-prompts` makes it")
    prompts = [
        Prompt(
            row["split"],
            row["index"],
            tuple(zip(row["demo_inputs"], row["demo_outputs"])),
            row["query"],
            tuple(row["answers"]),
            tuple(row["dummies"]),
            tuple(row.get("all_answers") or row["answers"]),
        )
        for row in table.to_pylist()
    ]
    return prompts, RunInfo.of_table(table, path)


def build_prompts(
    task_file: str | os.PathLike[str], tokenizer, fmt: PromptFormat, sizes: SplitSizes, seed: int, model_name: str
) -> tuple[list[Prompt], RunInfo]:
    """Filter a built task for a model's tokenizer and sample the splits; returns the prompts and their
    provenance (``model_name`` is the study's name for the model)."""
    fmt.validate()
    pairs = read_pairs(task_file)
    task = read_task_info(task_file)
    usable, rendering = apply_rules(pairs, tokenizer, task.rules)
    try:
        prompts = sample_prompts(usable, sizes, seed)
    except ValueError as error:
        raise ConfigError(
            f"task {task.name} ({task_file}), after keeping the pairs whose answers this "
            f"model's tokenizer can score: {error}",
            "lower k or the number of dummies (--k, --n-dummies), or give the task more pairs",
            "sizes.k and sizes.dummies in params.yaml",
        ) from None
    info = RunInfo(model_name, task, seed, fmt, sizes, len(pairs), len(usable), rendering)
    log.info(
        "%s: %d of %d pairs usable%s; %d prompts",
        task.name,
        len(usable),
        len(pairs),
        " (leading space)" if rendering["leading_space"] else "",
        len(prompts),
    )
    return prompts, info


def write_prompts(prompts: Sequence[Prompt], info: RunInfo, out: str | os.PathLike[str]) -> None:
    store.write_parquet(prompts_to_table(prompts), out, info.to_dict())


def make_prompt_file(
    task_file: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    fmt: PromptFormat,
    sizes: SplitSizes,
    seed: int,
    model_name: str | None = None,
) -> None:
    """Filter a built task for a model's tokenizer, sample the splits, and write them with provenance
    (``model_name`` defaults to the model's own, :func:`taskvec.models.model_name`)."""
    from taskvec.models import load_tokenizer
    from taskvec.models import model_name as default_name

    prompts, info = build_prompts(
        task_file, load_tokenizer(model_dir), fmt, sizes, seed, model_name or default_name(model_dir)
    )
    write_prompts(prompts, info, out)
