"""Shared fixtures: tiny random-weight models of each supported architecture (for mechanics only),
and the real smollm2-135m model converted once per test session (for behaviour)."""

from __future__ import annotations

import os
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from taskvec.models import LoadedModel

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

TINY_CONFIGS = {
    "llama": dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2),
    "mistral": dict(
        hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2, sliding_window=None
    ),
    "qwen2": dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2),
    "qwen3": dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=8),
    "gemma": dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=1, head_dim=8),
    "gemma2": dict(
        hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=1, head_dim=8, sliding_window=4
    ),
    "gemma3_text": dict(
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        sliding_window=4,
        layer_types=None,
    ),
    "gpt_neox": dict(hidden_size=32, intermediate_size=64, num_attention_heads=4),
    "gptj": dict(n_embd=32, n_head=4, rotary_dim=4, n_positions=64),
    "gpt2": dict(n_embd=32, n_head=4, n_positions=64),
}
TINY_LAYERS = 4


def char_tokenizer():
    """A character-level fast tokenizer over printable ASCII, with a pad token."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [c for c in string.printable if c not in "\r\x0b\x0c"]
    vocab = {"<pad>": 0, "<unk>": 1, **{c: i + 2 for i, c in enumerate(chars)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>")


def tiny_model(model_type: str, n_layers: int = TINY_LAYERS, **overrides) -> LoadedModel:
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = char_tokenizer()
    settings = {**TINY_CONFIGS[model_type], **overrides}
    if model_type in ("gptj", "gpt2"):
        settings["n_layer"] = n_layers
    else:
        settings["num_hidden_layers"] = n_layers
    if settings.pop("layer_types", "absent") is None:
        settings["layer_types"] = ["sliding_attention", "full_attention"] * (n_layers // 2)
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tokenizer), pad_token_id=0, bos_token_id=1, eos_token_id=1, **settings
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    return LoadedModel(model, tokenizer, torch.device("cpu"), {"source": f"tiny-random-{model_type}"})


@pytest.fixture(params=sorted(TINY_CONFIGS))
def tiny_lm(request) -> LoadedModel:
    return tiny_model(request.param)


def run_cli(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([str(BIN / "taskvec"), *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"taskvec {' '.join(args)} failed:\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """The real packaged smollm2-135m, converted by the CLI once per session."""
    out = tmp_path_factory.mktemp("models") / "smollm2-135m"
    run_cli("convert-model", "packaged:smollm2-135m", "--out", str(out))
    return out


@pytest.fixture(scope="session")
def smollm2(smollm2_dir) -> LoadedModel:
    from taskvec.models import load_model

    return load_model(smollm2_dir, device="cpu", dtype="float32")


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a directory with hard links where possible (model weights are large)."""
    shutil.copytree(src, dst, copy_function=_link_or_copy)


LINK_ABOVE_BYTES = 1 << 20


def _link_or_copy(src, dst):
    """Large files (model weights) are hard-linked; small ones are copied, so that a test that edits a
    copy's file in place (params.yaml, a task file) does not edit the original through the link."""
    if os.path.getsize(src) > LINK_ABOVE_BYTES:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def run_info(task: str, rules: dict | None = None, model_name: str = "synthetic", seed: int = 0, **fields):
    """The metadata record of a prompts or results file of a synthetic run (see taskvec.prompts.RunInfo)."""
    from taskvec.prompts import PromptFormat, RunInfo, SplitSizes
    from taskvec.tasks.base import TaskInfo, TaskRules

    sources = ({"package": "taskvec", "version": "test", "registry": "generated", "license": "Apache-2.0"},)
    info = TaskInfo(
        task,
        "algorithmic",
        0,
        f"{task}, synthetic",
        sources,
        TaskRules(**(rules or {})),
        None,
        f"{task} is synthetic",
        30,
    )
    values = {
        "format": PromptFormat(),
        "sizes": SplitSizes(),
        "n_pairs": 30,
        "n_pairs_usable": 30,
        "rendering": {"leading_space": False},
        **fields,
    }
    return RunInfo(model_name, info, seed, **values)


# The tiny study: the real smollm2-135m, three tasks, a few prompts (.test/params.yaml, which a person
# runs by hand with `snakemake --configfile .test/params.yaml --replace-workflow-config`).
TINY_PARAMS = yaml.safe_load((ROOT / ".test" / "params.yaml").read_text())


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def snakemake(project: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(BIN / "snakemake"), "--cores", "2", *args], cwd=project, env=env or _env(), capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(project: Path, *args: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job Snakemake plans to run, read from its machine-readable summary
    (an output's plan is "update pending"; the wildcards come from the output's path, by the study's
    layout). A rule without outputs (``all``) is no job of the summary."""
    from taskvec.workflow.contract import wildcards_of
    from taskvec.workflow.runner import summary

    jobs = set()
    for row in summary(project, *args):
        if row["plan"] == "update pending":
            wildcards = wildcards_of(row["output_file"])
            jobs.add((row["rule"], ", ".join(f"{key}={value}" for key, value in sorted(wildcards.items()))))
    return sorted(jobs)


def make_project(root: Path, params: dict) -> Path:
    project = root / "project"
    project.mkdir()
    for name in ("Snakefile", "dvc.yaml", "environment.yml"):
        shutil.copy2(ROOT / name, project / name)
    shutil.copytree(ROOT / "workflow", project / "workflow")
    shutil.copytree(ROOT / "profiles", project / "profiles")
    shutil.copytree(ROOT / "examples", project / "examples")
    shutil.copytree(ROOT / "src" / "taskvec", project / "src" / "taskvec", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


@pytest.fixture(scope="session")
def study(tmp_path_factory, smollm2_dir) -> Path:
    """A completed tiny study (workflow tests and the browser test share it; a test that changes
    it works on a copy). The model directory is put in place already converted (the
    conversion itself is tested with the CLI), newer than the code it depends on."""
    project = make_project(tmp_path_factory.mktemp("study"), TINY_PARAMS)
    copy_tree(smollm2_dir, project / "data" / "models" / "smollm2-135m")
    os.utime(project / "data" / "models" / "smollm2-135m")
    snakemake(project)
    return project


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=taskvec tests", "-c", "user.email=tests@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def _dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, env=_env(), capture_output=True, text=True)
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def _versioned_copy(study: Path, project: Path) -> None:
    """A copy of the study as a fresh git + DVC repository (no lock file, no DVC state yet)."""
    copy_tree(study, project)
    shutil.rmtree(project / ".dvc", ignore_errors=True)
    (project / "dvc.lock").unlink(missing_ok=True)
    shutil.copy2(ROOT / ".gitignore", project / ".gitignore")
    _git(project, "init", "-q")
    _dvc(project, "init", "-q")


@pytest.fixture(scope="session")
def reproduced(study, tmp_path_factory) -> Path:
    """The tiny study as its own git + DVC repository after `dvc repro study` (what `make reproduce`
    runs) and a commit of everything: the DVC tests each work on a copy (:func:`copy_tree`), so that
    the study stage is reproduced once per session, not once per test."""
    project = tmp_path_factory.mktemp("reproduced") / "project"
    _versioned_copy(study, project)
    _dvc(project, "repro", "study")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "study")
    return project
