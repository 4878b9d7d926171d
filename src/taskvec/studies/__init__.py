"""The extended studies, each declared once (:class:`taskvec.studies.base.Study`) in its own folder
under this package, behind this registry: the workflow's rules and declared outputs, the stale-output
cleanup, the reader of analysis files and the extended report all read the declarations, and none of
them names a study. A study's folder declares ``STUDY`` in its ``__init__.py``; its report module is
imported only when the report is built."""

from __future__ import annotations

import functools
import importlib
import pkgutil
from types import ModuleType

from taskvec.errors import ConfigError
from taskvec.studies.base import Study


@functools.cache
def registry() -> dict[str, Study]:
    """Every declared study by name, in their declared order."""
    found = [
        importlib.import_module(f"{__name__}.{info.name}").STUDY
        for info in pkgutil.iter_modules(__path__)
        if info.ispkg
    ]
    return {study.name: study for study in sorted(found, key=lambda s: (s.order, s.name))}


def get(name: str) -> Study:
    try:
        return registry()[name]
    except KeyError:
        raise ConfigError(f"unknown extended study {name!r}", f"choose one of {', '.join(registry())}") from None


def owner(data: str) -> Study | None:
    """The study whose step writes the data file of that name (its metadata's "analysis")."""
    return next((s for s in registry().values() if data in s.data), None)


def report_module(study: Study) -> ModuleType:
    return importlib.import_module(study.report)


def data_names() -> tuple[str, ...]:
    return tuple(name for study in registry().values() for name in study.data)


def table_names() -> tuple[str, ...]:
    return tuple(name for study in registry().values() for name in study.tables)


def figure_names() -> tuple[str, ...]:
    return tuple(name for study in registry().values() for name in study.figures)
