"""The documentation site (docs/, mkdocs.yml): it builds with no warning (`mkdocs build --strict`:
a broken link or a missing page fails), every key of the committed metrics.json files is in its
reference, and every Python block of the docs runs (the blocks of one page in one interpreter, in
order, as a reader would paste them)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import BIN, ROOT, copy_tree

DOCS = ROOT / "docs"

# Levels of metrics.json whose keys are names (a model, a task, a format, a count), written in the
# reference as placeholders
NAMED_BELOW = {
    "models": "<model>",
    "tasks": "<task>",
    "by_category": "<category>",
    "conflicting_tasks": "<pair>",
    "paper_mean_over_models": "<task>",
    "heads_shared_by_tasks": "<head>",
    "fv_by_n_heads": "<n>",
    "transfer": "<format>",
    "tv_transfer": "<format>",
    "choices": "<task>",
    "paired": "<contrast>",
    "answer_space": "<control>",
    "failed_on": "<task>",
}


def _paths(value, path=()):
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from _paths(inner, (*path, key))
    else:
        yield path


def documented_name(path: tuple[str, ...]) -> str:
    """A metrics key as the reference writes it: names replaced by their placeholders."""
    out = []
    for i, key in enumerate(path):
        above, two_above = (path[i - 1] if i else None), (path[i - 2] if i > 1 else None)
        if above in NAMED_BELOW and not (above == "tasks" and two_above == "formats"):
            key = NAMED_BELOW[above]
        elif above == "methods" and i > 2 and path[1] != two_above:  # a method, below the section's name
            key = "<method>"
        elif two_above in ("transfer", "tv_transfer") or (above, two_above) == ("formats", "formats"):
            key = "<format>"
        elif above and re.fullmatch(r"(icl|bare|tv)_by_format(_ci)?", above):
            key = "<format>"
        elif above and re.fullmatch(r"(icl|tv)_by_k(_ci)?", above):
            key = "<k>"
        elif above and re.fullmatch(r"tv_by_contexts(_ci)?", above):
            key = "<m>"
        out.append(key)
    return ".".join(out)


@pytest.mark.parametrize("metrics", ["reports/metrics.json", "reports/extended/metrics.json"])
def test_every_metrics_key_is_in_the_reference(metrics):
    reference = (DOCS / "metrics.md").read_text()
    keys = {documented_name(path) for path in _paths(json.loads((ROOT / metrics).read_text()))}
    assert len(keys) > 50
    missing = sorted(key for key in keys if f"`{key}`" not in reference)
    assert missing == [], missing


def test_the_placeholders_replace_names_only():
    assert (
        documented_name(("models", "m", "tasks", "t", "tv_by_k_ci", "10"))
        == "models.<model>.tasks.<task>.tv_by_k_ci.<k>"
    )
    assert documented_name(("models", "m", "formats", "formats", "qa", "icl", "ci")) == (
        "models.<model>.formats.formats.<format>.icl.ci"
    )
    assert documented_name(("models", "m", "tasks", "t", "tv")) == "models.<model>.tasks.<task>.tv"


def test_the_site_builds_without_a_warning(tmp_path):
    result = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "metrics" / "index.html").is_file()
    api = (tmp_path / "site" / "library" / "index.html").read_text()
    assert "task_vector" in api and "Intervention" in api  # the reference, from the docstrings


def python_blocks(page) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


# one-off.md's block is run, and what it prints checked, by
# test_api.py::test_the_readme_snippet_runs_and_its_vector_turns_bare_queries_into_antonyms
# tutorial.md is a notebook, run as one by test_the_tutorial_notebook_runs_and_its_vector_answers_new_queries
RUN_HERE = ["library.md"]
RUN_ELSEWHERE = ["one-off.md", "tutorial.md"]


def test_every_page_with_python_is_run():
    pages = sorted(page.name for page in DOCS.glob("*.md") if python_blocks(page))
    assert pages == sorted(RUN_HERE + RUN_ELSEWHERE)
    assert (ROOT / "README.md").read_text().count("```python") == 0


@pytest.mark.model
@pytest.mark.parametrize("page", RUN_HERE)
def test_every_python_block_of_a_page_runs(page, smollm2_dir, tmp_path):
    """In a directory with the examples and a converted model where the docs say they are, and the
    packaged model's conversion in the cache, as a reader of the page would have them."""
    work = tmp_path / "work"
    copy_tree(ROOT / "examples", work / "examples")
    copy_tree(smollm2_dir, work / "data" / "models" / "smollm2-135m")
    cache = tmp_path / "cache"
    copy_tree(smollm2_dir, cache / "models" / "packaged--smollm2-135m")
    code = "\n".join(python_blocks(DOCS / page))
    env = {**os.environ, "TASKVEC_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "each page's blocks print what they show"


@pytest.mark.model
def test_the_tutorial_notebook_runs_and_its_vector_answers_new_queries(smollm2_dir, tmp_path, monkeypatch):
    """docs/tutorial.md, read by jupytext as the notebook it is and executed in a Jupyter kernel from
    top to bottom: it draws the layer curve and its vector turns bare queries into opposites."""
    import jupytext
    from nbclient import NotebookClient

    cache = tmp_path / "cache"
    copy_tree(smollm2_dir, cache / "models" / "packaged--smollm2-135m")
    monkeypatch.setenv("TASKVEC_CACHE", str(cache))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = jupytext.read(DOCS / "tutorial.md")
    work = tmp_path / "work"
    work.mkdir()
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    assert any("image/png" in output.get("data", {}) for output in outputs)  # the layer curve
    text = "".join(output.get("text", "") for output in outputs)
    assert "young: bare" in text and "with the task vector 'old'" in text
    assert (work / "opposites.jsonl").is_file()


def test_the_documentations_method_table_is_the_registrys():
    """docs/methods.md's table lists exactly the registered methods, each with its label, site,
    operation, blocks and summary (``taskvec.methods.table()``): no method documented by hand alone."""
    from taskvec import methods

    text = (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    assert methods.table() in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(methods.names())
