"""Every method that turns demonstrations into a vector for a frozen model: one module per method,
one protocol (:class:`taskvec.methods.base.Method`), and this registry.

A method's module declares ``METHODS``, a tuple of :class:`~taskvec.methods.base.Method` records
(one class may register several variants: exact and attribution-patched function-vector heads, the
state vector's inner and momentum optimisations). The registry finds every module of this package
that declares them, and any package's under the ``taskvec.methods`` entry-point group, so that a new
method is one new module: the command line's ``--method`` choices and help, the params schema's
per-method settings, the comparison and its report all read the registry. Method modules import torch
and the model code inside their functions, so listing the methods loads neither.

The methods (``taskvec vector --help`` gives each one's summary; ``docs/methods.md`` their table):
the task vector (Hendel et al. 2023), the mean difference (Rimsky et al. 2024, applied to ICL), the
in-context vector (Liu et al. 2024), the function vector (Todd et al. 2024; heads ranked exactly or by
attribution patching), the state vector (Li et al. 2024; inner and momentum), implicit in-context
learning (Li et al. 2025) and conceptor steering (Postmus and Abreu 2024).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from importlib import metadata
from typing import TYPE_CHECKING

from taskvec.errors import ConfigError

if TYPE_CHECKING:
    from taskvec.methods.base import Method

ENTRY_POINTS = "taskvec.methods"  # other packages' methods: an entry point naming a module with METHODS
NOT_METHODS = frozenset({"base", "search", "pool", "heads"})  # the protocol's own modules


def _declared(module_name: str) -> tuple[Method, ...]:
    return tuple(getattr(importlib.import_module(module_name), "METHODS", ()))


@functools.cache
def registry() -> dict[str, Method]:
    """Every registered method by name, in their declared order."""
    found: list[Method] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name not in NOT_METHODS and not info.name.startswith("_"):
            found.extend(_declared(f"{__name__}.{info.name}"))
    for point in metadata.entry_points(group=ENTRY_POINTS):
        found.extend(_declared(point.value))
    by_name: dict[str, Method] = {}
    for method in sorted(found, key=lambda m: (m.order, m.name)):
        if method.name in by_name:
            raise ConfigError(f"two methods are registered as {method.name!r}", "give one of them another name")
        by_name[method.name] = method
    return by_name


def names() -> tuple[str, ...]:
    return tuple(registry())


def get(name: str) -> Method:
    try:
        return registry()[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}", f"choose one of {', '.join(registry())}") from None


def label(name: str) -> str:
    """What the report calls a method (or a row that is no method: its name in words)."""
    method = registry().get(name)
    return method.label if method else name.replace("_", " ")


def reference(names) -> str | None:
    """The method every other of ``names`` is contrasted with (the registered reference), if among them."""
    return next((m for m in names if m in registry() and registry()[m].reference), None)


def estimated_pairs(names) -> list[tuple[str, str]]:
    """(estimate, the method it estimates) for each of ``names`` that estimates another of them."""
    found = registry()
    return [(m, found[m].estimates) for m in names if m in found and found[m].estimates in names]


def help_text() -> str:
    """``--method``'s help: every method with its summary."""
    return "how the vector is made and patched: " + "; ".join(f"{m.name} ({m.summary})" for m in registry().values())


def settings_fields(method: Method) -> list[tuple[str, type, object, str]]:
    """A method's own settings (:attr:`~taskvec.methods.base.Method.Settings`): each field's name,
    type, default (its authors') and help."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(method.Settings)
    return [
        (f.name, hints[f.name], f.default, f.metadata.get("help", f.name.replace("_", " ")))
        for f in dataclasses.fields(method.Settings)
    ]


def settings() -> dict[str, tuple[Method, type, object, str]]:
    """Every method's own settings by name (one namespace: params.yaml's ``methods`` block and the
    command line's options), each with its method, type, default and help."""
    found: dict[str, tuple[Method, type, object, str]] = {}
    for method in registry().values():
        for field, kind, default, text in settings_fields(method):
            if field in found:
                raise ConfigError(
                    f"{method.name} and {found[field][0].name} both declare a setting {field!r}",
                    "give one of them another name: method settings share one namespace",
                )
            found[field] = (method, kind, default, text)
    return found


def by_method(values: dict) -> dict[str, dict]:
    """Method settings given by name (one namespace) grouped by the method that declares them."""
    known = settings()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"no registered method has the setting(s) {', '.join(unknown)}",
            f"the method settings are {', '.join(known) or 'none'}",
        )
    grouped: dict[str, dict] = {}
    for field, value in values.items():
        grouped.setdefault(known[field][0].name, {})[field] = value
    return grouped


def settings_schema() -> dict:
    """The JSON schema of each method's own settings in params.yaml's ``methods`` block: derived from
    the methods' settings, never kept by hand."""
    kinds = {int: "integer", float: "number", str: "string", bool: "boolean"}
    return {
        field: {"description": f"{method.label}: {text}", "type": kinds[kind], "default": default}
        | ({"minimum": 1} if kind is int else {})
        for field, (method, kind, default, text) in settings().items()
    }


def table() -> str:
    """The documentation's table of methods (``docs/methods.md``; a test keeps the two equal)."""
    rows = [
        "| method | label in the report | where it writes | operation | blocks | what it is |",
        "|---|---|---|---|---|---|",
    ]
    rows += [
        f"| `{m.name}` | {m.label} | {m.site} | {m.operation} | {m.layers} | {m.summary} |" for m in registry().values()
    ]
    return "\n".join(rows)
