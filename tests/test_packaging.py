"""The two dependency lists a user may install from agree: pyproject.toml (pip, what `make` uses) and
environment.yml (conda, what the rules' `conda:` directives use)."""

from __future__ import annotations

import tomllib

import yaml

from conftest import ROOT


def test_environment_yml_pins_exactly_what_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict) and "pip" in entry)
    assert set(pip) == pinned
    assert all("==" in requirement for requirement in pinned)
    assert "python=3.11" in environment["dependencies"]
    assert "torch==2.13.0" in pinned  # a looser pin pulls a multi-GB CUDA build
