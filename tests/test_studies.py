"""The extended studies' registry (taskvec.studies): each study declares its step's inputs and
outputs and its report's tables and figures once; the workflow contract, the reader of analysis files
and the extended report take them from there, and the report writes nothing a study does not declare."""

from __future__ import annotations

import pytest
import yaml

from conftest import ROOT, TINY_PARAMS
from taskvec import studies
from taskvec.studies.base import Section
from taskvec.studies.formats.step import Format
from taskvec.studies.report import _write_section
from taskvec.workflow import contract
from taskvec.workflow.contract import StudyLayout


def test_the_contracts_extended_outputs_are_the_studies_declarations():
    declared = studies.registry().values()
    assert contract.EXTENDED_DATA == tuple(d for s in declared for d in s.data)
    assert contract.EXTENDED_TABLES == tuple(t for s in declared for t in s.tables)
    assert contract.EXTENDED_FIGURES == tuple(f for s in declared for f in s.figures)
    assert "methods_heads" in contract.EXTENDED_FIGURES  # written by the methods section: declared with it
    assert all(studies.owner(d) is s for s in declared for d in s.data)


def test_a_studys_rule_reads_what_it_declares_and_writes_its_data_by_name():
    layout = StudyLayout.of(TINY_PARAMS)
    for study in studies.registry().values():
        inputs = layout.study_inputs(study.name, "smollm2-135m")
        assert set(inputs) == {"tasks", "model", *study.inputs}
        assert all(path.endswith(".parquet") and "/sample0." in path for kind in study.inputs for path in inputs[kind])
        outputs = layout.study_outputs(study.name)
        assert outputs == {d: f"data/extended/{{model}}/{d}.parquet" for d in study.data}


def test_the_report_writes_what_a_study_declares_and_refuses_anything_else(tmp_path):
    study = studies.get("methods")
    figure = {"png": b"png", "svg": b"svg"}
    section = Section("", {"methods": [{"a": 1}]}, {name: {"m": figure} for name in study.figures})
    _write_section(study, section, tmp_path)
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {"tables/methods.csv", "tables/methods.md"} | {
        f"figures/{name}_m.{fmt}" for name in study.figures for fmt in ("png", "svg")
    }
    undeclared = Section("", {}, {"methods_new_figure": {"m": figure}})
    with pytest.raises(ValueError, match="methods_new_figure"):
        _write_section(study, undeclared, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_every_study_has_the_skeletons_report_functions():
    for study in studies.registry().values():
        module = studies.report_module(study)
        assert all(
            callable(getattr(module, name, None)) for name in ("read", "metrics", "section", "headline", "findings")
        )


SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "params.schema.yaml").read_text())


def _schema_default(path: str):
    node = SCHEMA
    for part in path.split("."):
        node = node["properties"][part]
    return node["default"]


@pytest.mark.parametrize("name", list(studies.registry()))
def test_a_studys_settings_default_alike_on_the_command_line_and_in_params_yaml(name):
    """Each setting a study places in params.yaml has the same default there as its option (the
    value meaning "unset" where it has one; the paper's formats for the prompt formats): a study run
    by hand and by the workflow with nothing set run the same step. A method's own settings are the
    method registry's (tests/methods)."""
    from taskvec.studies.formats.step import DEFAULT_FORMATS

    study = studies.get(name)
    for option in study.options:
        if option.param is None:
            continue
        default = _schema_default(option.param)
        if option.kind == "format":
            assert [Format(n, s["demonstration"], s["separator"]) for n, s in default.items()] == list(DEFAULT_FORMATS)
        elif option.unset is not None:
            assert option.default is None and default == option.unset
        else:
            assert default == (list(option.default) if option.many else option.default), option.name


def test_every_studys_subcommand_comes_from_its_declaration():
    """The CLI builds one subcommand per registered study from its declaration: its inputs and
    outputs as required options, its settings with their defaults in the help; a study's step entry
    exists and takes every keyword the skeleton passes."""
    import importlib
    import inspect

    from taskvec.cli import build_parser

    subcommands = build_parser()._subparsers._group_actions[0].choices
    for study in studies.registry().values():
        parser = subcommands[study.command]
        required = {a.dest for a in parser._actions if a.required}
        assert required == {"model_dir", "tasks", *study.inputs, *map(study.output_option, study.data)}
        options = {a.dest: a for a in parser._actions}
        for option in study.all_options():
            assert option.flag in options[option.name].option_strings
            if option.default is not None:
                assert f"(default: {option.default})" in options[option.name].help
        module, _, function = study.entry.partition(":")
        parameters = inspect.signature(getattr(importlib.import_module(module), function)).parameters
        passed = {*study.inputs, *map(study.output_option, study.data), "compute"}
        passed |= {o.name for o in study.options}
        assert passed <= set(parameters), study.name
        assert list(parameters)[:2] == ["model_dir", "pairs_files"]


def test_removing_a_study_removes_its_subcommand_and_its_rule(monkeypatch):
    """A study gone from the registry is gone from `taskvec --help` and from the contract's outputs,
    with no other edit."""
    from taskvec.cli import build_parser

    kept = {name: study for name, study in studies.registry().items() if name != "travel"}
    monkeypatch.setattr(studies, "registry", lambda: kept)
    subcommands = build_parser()._subparsers._group_actions[0].choices
    assert "travel" not in subcommands and "compare-methods" in subcommands
    assert "travel" not in studies.data_names()


def test_a_records_fields_are_its_columns_and_its_rows_take_only_it():
    """A study's rows are typed records: the schema is the record's fields in order with their
    declared types, a row of another type is refused, and rows come back by field name."""
    import dataclasses

    import pyarrow as pa

    from taskvec.studies.records import Rows, column, schema_of

    @dataclasses.dataclass(frozen=True)
    class Row:
        task: str = column(pa.string())
        index: int = column(pa.int32())
        correct: bool | None = column(pa.bool_())

    @dataclasses.dataclass(frozen=True)
    class Other:
        task: str = column(pa.string())

    assert schema_of(Row) == pa.schema([("task", pa.string()), ("index", pa.int32()), ("correct", pa.bool_())])
    rows = Rows(Row)
    rows.add(Row(task="a", index=3, correct=None))
    rows.add(Row(task="b", index=1, correct=True))
    with pytest.raises(TypeError, match="a Row table takes Row rows, not Other"):
        rows.add(Other(task="c"))
    table = rows.table()
    assert table.schema == schema_of(Row)
    assert table.to_pylist() == [
        {"task": "a", "index": 3, "correct": None},
        {"task": "b", "index": 1, "correct": True},
    ]


def test_the_summary_leads_with_the_matched_methods_comparison_and_names_failed_runs():
    """The findings and panels come in the studies' summary order (the methods comparison first); its
    panel shows ICL and only the task-level methods whose runs passed; its findings give the range by
    each metric, the failed runs and what survives of the gaps with deranged labels."""
    from taskvec.studies.report import findings, headline_panels

    def method(accuracy, gap, strict, gate=True, share=None):
        entry = {"accuracy": accuracy, "accuracy_ci": [accuracy - 0.1, accuracy + 0.1], "gap_closed": gap}
        entry["strict"] = strict
        if gate:
            entry["gate"] = {"failed_on": {}, "failed": False}
        if share is not None:
            entry["answer_space"] = {"deranged_labels": {"accuracy": 0.3, "share": share, "share_ci": [0.1, 0.9]}}
        return entry

    compared = {
        "bare": method(0.1, 0.0, 0.0, gate=False),
        "icl": method(0.7, 1.0, 0.65, gate=False, share=0.25),
        "task_vector": method(0.6, 0.83, 0.2, share=0.8),
        "mean_difference": method(0.5, 0.67, 0.1),
        "implicit_icl": method(0.05, -0.1, 0.0),
    }
    entry = {
        "methods": {"methods": compared, "failed": ["implicit_icl"]},
        "function_vectors": {"icl_works": {"tv": 0.6, "tv_ci": [0.5, 0.7], "fv": 0.4, "fv_ci": [0.3, 0.5]}},
    }
    panels = headline_panels({"models": {"m": entry}})
    assert panels[0][0].startswith("Methods compared") and "unmatched" in panels[1][0]
    assert [label for label, _, _ in panels[0][1]["m"]] == ["ICL", "task vector, task level", "mean difference"]
    lines = findings({"models": {"m": entry}})
    assert lines[0] == (
        "m: the 2 task-level methods whose runs pass their gates close 0.67 to 0.83 of the gap from the bare query "
        "to ICL by the first token; by the whole answer they score 0.10 to 0.20, ICL 0.65."
    )
    assert lines[1] == "m: failed runs, no measurement: implicit ICL."
    assert lines[2].startswith("m: with deranged labels the task vector, task level keeps 80% of its gap, ICL 25%")
    assert lines[3].startswith("Function vectors: their section sets the per-prompt task vector")
