"""Loading never runs code from a file: no pickle anywhere in the package, torch.load only with
weights_only, no remote code; and the repository holds no credentials."""

from __future__ import annotations

import ast
import re
import subprocess

import pytest

from conftest import ROOT

PACKAGE = ROOT / "src" / "taskvec"
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _problems(source: str) -> list[str]:
    tree = ast.parse(source)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            problems += [f"imports {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            problems.append(f"imports from {node.module}")
    for call in _calls(tree):
        keywords = {k.arg: k.value for k in call.keywords}
        if _name(call.func).endswith("torch.load") or (_name(call.func) == "load" and "weights_only" in keywords):
            value = keywords.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                problems.append(f"line {call.lineno}: torch.load without weights_only=True")
        remote = keywords.get("trust_remote_code")
        if remote is not None and not (isinstance(remote, ast.Constant) and remote.value is False):
            problems.append(f"line {call.lineno}: trust_remote_code")
    return problems


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_package_never_unpickles_or_runs_remote_code(path):
    assert _problems(path.read_text()) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle\n",
        "from joblib import load\n",
        "import torch\nstate = torch.load('x.pt')\n",
        "import torch\nstate = torch.load('x.pt', weights_only=False)\n",
        "from transformers import AutoModel\nm = AutoModel.from_pretrained('x', trust_remote_code=True)\n",
    ],
)
def test_the_check_catches_each_unsafe_pattern(snippet):
    assert _problems(snippet) != []


def test_repository_holds_no_credentials():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    patterns = [
        r"AKIA[0-9A-Z]{16}",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"(?i)\b(password|secret_access_key)\s*=\s*\S+",
        r"ghp_[A-Za-z0-9]{36}",
        r"hf_[A-Za-z0-9]{30,}",
    ]
    found = []
    for name in tracked:
        path = ROOT / name
        if not path.is_file() or path.suffix in {".png", ".svg", ".parquet"} or name == "reports/index.html":
            continue
        text = path.read_text(errors="ignore")
        found += [f"{name}: {p}" for p in patterns if re.search(p, text)]
    assert found == []
    dvc_config = (ROOT / ".dvc" / "config").read_text()
    assert not re.search(r"(?i)(password|access_key|secret|token)", dvc_config)
