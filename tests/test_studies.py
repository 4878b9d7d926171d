"""The extended studies' registry (taskvec.studies): each study declares its step's inputs and
outputs and its report's tables and figures once; the workflow contract, the reader of analysis files
and the extended report take them from there, and the report writes nothing a study does not declare."""

from __future__ import annotations

import pytest

from conftest import TINY_PARAMS
from taskvec import studies
from taskvec.studies.base import Section
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
        assert all(callable(getattr(module, name, None)) for name in ("read", "metrics", "section", "headline"))
