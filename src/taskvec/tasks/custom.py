"""The user's own tasks: a JSONL or CSV file of input/output pairs.

JSONL: one object per line, ``{"input": "...", "output": "..."}``; ``output`` may be a list of
valid answers (the first is the one shown in demonstrations).
CSV: a header with the columns ``input`` and ``output``; several valid answers are separated by
``|`` in ``output``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

from taskvec.errors import TaskFileError
from taskvec.tasks.base import Pair, Task, TaskRules

FORMATS = (".jsonl", ".csv")


def _check_value(path: Path, line: int, column: str, value) -> str:
    if not isinstance(value, str):
        raise TaskFileError(f"{path}:{line}: {column} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise TaskFileError(f"{path}:{line}: {column} is empty")
    if "\n" in value or "\r" in value:
        raise TaskFileError(f"{path}:{line}: {column} spans several lines")
    if value != value.strip():
        raise TaskFileError(f"{path}:{line}: {column} {value!r} has leading or trailing whitespace")
    return value


def _rows(path: Path):
    """(line number, input, outputs) of every record."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as error:
                    raise TaskFileError(f"{path}:{number}: invalid JSON ({error.msg})") from None
                if not isinstance(record, dict):
                    raise TaskFileError(f"{path}:{number}: expected a JSON object with input and output")
                for column in ("input", "output"):
                    if column not in record:
                        raise TaskFileError(f"{path}:{number}: missing {column!r}")
                outputs = record["output"] if isinstance(record["output"], list) else [record["output"]]
                yield number, record["input"], outputs
    elif path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in ("input", "output") if c not in (reader.fieldnames or [])]
            if missing:
                raise TaskFileError(
                    f"{path}:1: missing column {', '.join(repr(c) for c in missing)} in the header "
                    f"(found {reader.fieldnames})"
                )
            try:
                for record in reader:
                    number = reader.line_num
                    if record["input"] is None or record["output"] is None:
                        raise TaskFileError(f"{path}:{number}: too few fields")
                    yield number, record["input"], record["output"].split("|")
            except csv.Error as error:
                raise TaskFileError(f"{path}:{reader.line_num}: invalid CSV ({error})") from None
    else:
        raise TaskFileError(f"{path}: unknown task file type; use one of {', '.join(FORMATS)}")


def read_task_file(path: str | os.PathLike[str], min_pairs: int = 1) -> list[Pair]:
    """Read and validate a custom task file."""
    path = Path(path)
    if not path.is_file():
        raise TaskFileError(f"{path}: task file not found")
    pairs: list[Pair] = []
    first_line: dict[str, int] = {}
    try:
        for number, source, outputs in _rows(path):
            source = _check_value(path, number, "input", source)
            if not outputs:
                raise TaskFileError(f"{path}:{number}: output is empty")
            outputs = tuple(_check_value(path, number, "output", o) for o in outputs)
            if source in first_line:
                raise TaskFileError(f"{path}:{number}: duplicate input {source!r} (first on line {first_line[source]})")
            first_line[source] = number
            pairs.append(Pair(source, outputs))
    except UnicodeDecodeError as error:
        raise TaskFileError(f"{path}: not UTF-8 text ({error.reason})") from None
    if len(pairs) < min_pairs:
        raise TaskFileError(
            f"{path}: {len(pairs)} pairs, but the prompts need at least {min_pairs} "
            "(k demonstrations + 1 query + the dummy queries); add pairs or lower sizes.k"
        )
    return pairs


def default_rules(one_token: bool = False) -> TaskRules:
    """A user task's rules when params.yaml sets none: one-token tasks are scored exactly (the paper's
    mapping tasks), others by prefix either way (its knowledge tasks); no leading space."""
    return TaskRules(one_token=one_token, leading_space="off", scoring="exact" if one_token else "prefix")


def custom_task(name: str, path: str | os.PathLike[str], rules: TaskRules | None = None, min_pairs: int = 1) -> Task:
    path = Path(path)

    def build(seed: int) -> list[Pair]:
        return read_task_file(path, min_pairs)

    def sources() -> list[dict]:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return [
            {
                "package": path.name,
                "registry": "user file",
                "version": f"sha256:{digest}",
                "license": "as given by its author",
            }
        ]

    return Task(name, "custom", f"user task from {path.name}", "", build, rules or default_rules(), sources=sources)
