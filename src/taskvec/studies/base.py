"""The skeleton every extended study fills: its declaration (:class:`Study`: what its step reads and
writes, what its report section writes), and what its report module receives and returns.

A study's report module (``Study.report``) defines four functions, the same for every study:

- ``read(files)``: its result from its data files (``{data name: (table, metadata)}``);
- ``metrics(result, context)``: ``(per-task metrics, the model's metrics)`` for metrics.json;
- ``section(parts)``: a :class:`Section` from ``[(context, result, model metrics)]``, one per model;
- ``headline(models)``: its panel of the extended report's summary figure from every model's metrics
  (``{model: metrics.json entry}``), ``(title, {model: [(bar label, mean, interval)]})``, or None;
- ``findings(models)``: its lines of the summary's findings list, computed from the same metrics.

The summary shows the studies' findings and panels in ``Study.summary_order`` (the matched methods
comparison first), the sections in ``Study.order``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting of a study's step, declared once: its ``--option`` (the name with dashes), the
    keyword its step's entry takes (the name), its help and default, and where params.yaml keeps it.

    ``kind``: ``int``, ``positive`` (an int above 0) or ``format`` (a prompt format: ``--format NAME
    DEMONSTRATION SEPARATOR``, repeated; params.yaml's mapping of name to template and separator).
    ``param``: its path in params.yaml ("travel.ks"), None where the workflow leaves the default;
    ``unset``: a params.yaml value (not None) that means "the default" and passes no option
    (``n_heads: 0``)."""

    name: str
    help: str
    kind: str = "int"
    default: object = None
    many: bool = False
    param: str | None = None
    unset: object = None
    spelled: str = ""  # the option's name where it is not the keyword's (a repeated one's singular)

    @property
    def flag(self) -> str:
        return "--" + (self.spelled or self.name).replace("_", "-")


@dataclasses.dataclass(frozen=True)
class Study:
    """One extended study, declared once: the rule, the driver, the report and the stale-output
    cleanup read its outputs from here."""

    name: str  # its key in metrics.json and params.yaml
    title: str  # its link in the page's navigation
    anchor: str  # its section's id
    command: str  # the `taskvec` subcommand of its step (and, with underscores, its workflow rule)
    help: str  # the subcommand's line in `taskvec --help`
    description: str  # its `--help` text
    entry: str  # "module:function" of its step: (model_dir, tasks, <inputs>, <outputs>, compute, <options>)
    # what its step reads of the default study's first sampling (besides the tasks and the model)
    inputs: tuple[str, ...]
    data: tuple[str, ...]  # data/extended/<model>/<name>.parquet, each file's metadata "analysis"
    tables: tuple[str, ...]  # reports/extended/tables/<name>.{csv,md}
    figures: tuple[str, ...]  # reports/extended/figures/<name>_<model>.{png,svg}
    report: str  # the module of its report functions (read, metrics, section, headline)
    order: int = 100
    # the study whose section this one's sits in (its heading and link are shown where that one is absent)
    within: str | None = None
    heading: str = ""  # its section's <h2>, for a study that another's sits in
    summary_order: int = 100  # where its findings and headline panel come in the summary
    options: tuple[Option, ...] = ()  # its step's own settings
    # a function of no arguments giving more options, read when the parser is built (a registry's)
    more_options: Callable[[], tuple[Option, ...]] | None = None

    @property
    def rule(self) -> str:
        """Its workflow rule's name (and its logs' folder)."""
        return self.command.replace("-", "_")

    def default(self, name: str) -> object:
        """The default of its setting ``name`` (its step's keyword default, declared once here)."""
        return next(option.default for option in self.options if option.name == name)

    def all_options(self) -> tuple[Option, ...]:
        return self.options + (self.more_options() if self.more_options else ())

    def output_option(self, data: str) -> str:
        """The option naming the file its step writes for the data file ``data``: ``--out`` for its
        first, ``--<name>-out`` for the others."""
        return "out" if data == self.data[0] else f"{data}_out"


@dataclasses.dataclass(frozen=True)
class ModelContext:
    """What a study's report needs of the default study for one model."""

    model: str
    kept: list[str]  # the tasks where ICL works, among those the study ran on
    icl: dict[str, float]  # the first sampling's ICL accuracy per task
    baseline: dict[str, float]  # the first sampling's bare-query accuracy per task
    categories: dict[str, str]  # each task's category


@dataclasses.dataclass(frozen=True)
class Section:
    """A study's part of the extended report: its HTML, its tables (name -> rows, every model's) and
    its figures (name -> model -> {format: bytes}); every name one the study declares."""

    html: str
    tables: dict[str, list[dict]]
    figures: dict[str, dict[str, dict[str, bytes]]]


def bars(entry: dict | None, keys: list[tuple[str, str]]) -> list[tuple[str, float, list]]:
    """A headline panel's bars from a model's metrics entry: (label, mean, interval) for each
    (label, "path/to/value") whose value has a mean."""
    out = []
    for label, path in keys:
        value = entry
        for part in path.split("/"):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, dict) and value.get("mean") is not None:
            out.append((label, value["mean"], value["ci"]))
    return out
