"""Checks on the study's configuration file that a JSON schema cannot make: YAML silently keeps
the last of two equal keys, so a task or model listed twice would vanish without a word."""

from __future__ import annotations

import os

import yaml

from taskvec.errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    pass


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"{loader.name}: line {key_node.start_mark.line + 1}: {key!r} appears twice (first on "
                f"line {seen[key]})",
                fix="give each entry once",
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def check_unique_keys(path: str | os.PathLike[str]) -> None:
    """Raise ValueError naming the line if any mapping in the YAML file repeats a key."""
    with open(path, encoding="utf-8") as handle:
        loader = _UniqueKeyLoader(handle)
        loader.name = str(path)
        try:
            loader.get_single_data()
        finally:
            loader.dispose()


SMALLEST_BUILTIN_TASK = 25  # pairs in next_letter and prev_letter, the smallest built-in tasks (a test checks)


def check_pairs_available(tasks: dict, sizes: dict, root: str | os.PathLike[str] = ".") -> None:
    """Raise ValueError, before any job runs, if a task has fewer pairs than one prompt draws
    (k demonstrations + 1 query + the dummy queries). Built-in tasks are built only when the sizes
    exceed the smallest of them; a model's tokenizer can remove more pairs later, which the prompt
    step reports in the same terms."""
    from pathlib import Path

    from taskvec.tasks import get_task
    from taskvec.tasks.custom import read_task_file

    needed = sizes["k"] + 1 + sizes["dummies"]
    for name, settings in tasks.items():
        if "file" in settings:
            path = Path(root) / settings["file"]
            if not path.is_file():
                continue  # reported as a missing input of its build step
            available = len(read_task_file(path))
        elif needed > SMALLEST_BUILTIN_TASK:
            available = len(get_task(name).build(settings.get("seed", 0)))
        else:
            continue
        if available < needed:
            raise ConfigError(
                f"params.yaml: tasks.{name} has {available} pairs, but each prompt draws {needed} distinct ones "
                f"(sizes.k={sizes['k']} demonstrations + 1 query + sizes.dummies={sizes['dummies']})",
                fix="lower sizes.k or sizes.dummies in params.yaml, or drop the task",
            )
