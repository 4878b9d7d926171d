"""Checks on the study's configuration file that a JSON schema cannot make: YAML silently keeps
the last of two equal keys, so a task or model listed twice would vanish without a word."""

from __future__ import annotations

import os

import yaml


class _UniqueKeyLoader(yaml.SafeLoader):
    pass


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ValueError(f"{loader.name}: line {key_node.start_mark.line + 1}: {key!r} appears twice (first on "
                             f"line {seen[key]}); give each entry once")
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
