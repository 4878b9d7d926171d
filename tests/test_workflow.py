"""The Snakemake workflow and DVC stage on a tiny study (the real smollm2-135m, two tasks, a few
prompts) in a temporary directory: outputs, incremental reruns, determinism, config validation."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import BIN, ROOT, copy_tree
from taskvec.evaluate import score
from taskvec.extract import read_activations

pytestmark = pytest.mark.workflow

TINY_PARAMS = {
    "models": {"smollm2-135m": {"source": "packaged:smollm2-135m"}},
    "tasks": {"to_upper": {"seed": 0},
              "country_currency": {"file": "examples/tasks/country_currency.jsonl", "seed": 0}},
    "prompt": {"demonstration": "example:{x}->{y}", "query": "example:{x}->", "separator": "\n"},
    "sizes": {"k": 5, "baseline": 8, "dev": 6, "test": 6, "dummies": 2},
    "compute": {"device": "cpu", "dtype": "float32", "batch_size": 8},
}


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def snakemake(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / "snakemake"), "--cores", "2", *args], cwd=project, env=_env(),
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(project: Path) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run would execute."""
    out = snakemake(project, "--dry-run").stdout
    jobs = re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", out, flags=re.M)
    result = []
    for rule, body in jobs:
        match = re.search(r"wildcards: (.*)", body)
        result.append((rule, match.group(1) if match else ""))
    return sorted(result)


def make_project(root: Path, params: dict) -> Path:
    project = root / "project"
    project.mkdir()
    for name in ("Snakefile", "dvc.yaml", "environment.yml"):
        shutil.copy2(ROOT / name, project / name)
    shutil.copytree(ROOT / "workflow", project / "workflow")
    shutil.copytree(ROOT / "examples", project / "examples")
    shutil.copytree(ROOT / "src" / "taskvec", project / "src" / "taskvec",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


@pytest.fixture(scope="module")
def study(tmp_path_factory, smollm2_dir) -> Path:
    """A completed tiny study. The model directory is put in place already converted (the
    conversion itself is tested with the CLI), newer than the code it depends on."""
    project = make_project(tmp_path_factory.mktemp("study"), TINY_PARAMS)
    copy_tree(smollm2_dir, project / "data" / "models" / "smollm2-135m")
    os.utime(project / "data" / "models" / "smollm2-135m")
    snakemake(project)
    return project


def test_study_writes_a_report_that_agrees_with_its_parquet_files(study):
    report = study / "reports"
    html = (report / "index.html").read_text()
    assert "<img" in html and "data:image/png;base64," in html and 'src="http' not in html
    metrics = json.loads((report / "metrics.json").read_text())
    model = metrics["models"]["smollm2-135m"]
    assert model["n_layers"] == 30
    assert set(model["tasks"]) == {"to_upper", "country_currency"}
    assert model["tasks"]["country_currency"]["category"] == "custom"
    assert "country_currency.jsonl" in html
    rows = {row["task"]: row for row in csv.DictReader((report / "tables" / "accuracy.csv").open())}
    for task, entry in model["tasks"].items():
        assert set(entry) >= {"baseline", "icl", "tv", "best_layer", "n_test"}
        assert entry["n_test"] == 6
        results = pq.read_table(study / "data" / "results" / "smollm2-135m" / f"{task}.parquet")
        scores = score(results)
        assert (entry["baseline"], entry["icl"], entry["tv"]) == pytest.approx((scores.baseline, scores.icl, scores.tv),
                                                                              abs=1e-4)
        assert entry["best_layer"] == scores.best_layer
        assert float(rows[task]["tv"]) == pytest.approx(entry["tv"])
        assert int(rows[task]["best_layer"]) == scores.best_layer
        assert f"{entry['icl']:.2f}" in html
        vectors, meta = read_activations(study / "data" / "activations" / "smollm2-135m" / f"{task}.parquet")
        assert len(vectors) == 12 and next(iter(vectors.values())).shape == (30, 576)
        schema = pq.read_schema(study / "data" / "activations" / "smollm2-135m" / f"{task}.parquet")
        assert str(schema.field("vector").type) == "fixed_size_list<element: float>[576]"
    assert (report / "figures" / "accuracy_by_layer_smollm2-135m.png").read_bytes()[:4] == b"\x89PNG"
    paper = {row["task"]: row for row in csv.DictReader((report / "tables" / "paper_comparison.csv").open())}
    assert float(paper["to_upper"]["paper_icl"]) == pytest.approx(metrics["paper_mean_over_models"]["to_upper"]["icl"])
    assert paper["country_currency"]["paper_icl"] == ""
    assert "Comparison with the paper" in html and "Tasks and data provenance" in html


def test_a_completed_study_has_nothing_left_to_do(study):
    assert planned_jobs(study) == []


def test_changing_report_code_reruns_only_the_report(study):
    html_code = study / "src" / "taskvec" / "report" / "html.py"
    original = html_code.read_text()
    try:
        html_code.write_text(original + "\n")
        assert planned_jobs(study) == [("all", ""), ("build_report", "")]
    finally:
        html_code.write_text(original)
        snakemake(study, "--touch")


def test_editing_a_custom_task_file_reruns_only_that_task(study):
    task_file = study / "examples" / "tasks" / "country_currency.jsonl"
    original = task_file.read_text()
    try:
        task_file.write_text(original + '{"input": "Atlantis", "output": "Orichalcum"}\n')
        jobs = planned_jobs(study)
        task_jobs = [wildcards for rule, wildcards in jobs if rule not in ("all", "build_report")]
        assert len(task_jobs) == 2 and all("country_currency" in w for w in task_jobs)
    finally:
        task_file.write_text(original)
        snakemake(study, "--touch")


def test_changing_one_tasks_setting_reruns_only_that_task(study):
    params_file = study / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["tasks"]["to_upper"]["seed"] = 5
    try:
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        jobs = planned_jobs(study)
        assert {rule for rule, _ in jobs} == {"all", "build_report", "build_task", "evaluate_task"}
        task_jobs = [wildcards for rule, wildcards in jobs if rule not in ("all", "build_report")]
        assert len(task_jobs) == 2 and all("to_upper" in w for w in task_jobs)
    finally:
        params_file.write_text(original)


def test_rerunning_gives_byte_identical_outputs(study):
    outputs = [study / "data" / step / "smollm2-135m" / "country_currency.parquet"
               for step in ("prompts", "activations", "results")]
    outputs += [study / "reports" / "metrics.json", study / "reports" / "index.html"]
    before = [path.read_bytes() for path in outputs]
    snakemake(study, "--forcerun", "evaluate_task")
    assert [path.read_bytes() for path in outputs] == before
    assert planned_jobs(study) == []


def test_dvc_repro_then_status_is_clean(study):
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=study, env=_env(), check=True)
    repro = subprocess.run([str(BIN / "dvc"), "repro"], cwd=study, env=_env(), capture_output=True, text=True)
    assert repro.returncode == 0, repro.stdout + repro.stderr
    status = subprocess.run([str(BIN / "dvc"), "status"], cwd=study, env=_env(), capture_output=True, text=True)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + status.stderr
    assert planned_jobs(study) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["tasks"].update(reverse_words={"seed": 0}),
         r"tasks.reverse_words is not a built-in task.*next_letter"),
        (lambda p: p["tasks"].update(mine={"file": "missing.txt"}), r"does not match"),
        (lambda p: p["tasks"].update(bad={"file": "examples/tasks/missing.jsonl"}), r"missing.jsonl"),
        (lambda p: p["models"].update(tiny={"source": "packaged:gpt5"}),
         r"models.tiny.source.*packaged:smollm2-135m, packaged:gemma3-270m"),
        (lambda p: p["sizes"].update(k="five"), r"'five' is not of type 'integer'"),
        (lambda p: p["sizes"].update(test=0), r"0 is less than the minimum of 1"),
        (lambda p: p.pop("sizes"), r"'sizes' is a required property"),
        (lambda p: p.update(extra=1), r"Additional properties are not allowed \('extra'"),
    ],
    ids=["unknown-task", "bad-task-file-type", "missing-task-file", "unknown-packaged-model", "wrong-type",
         "zero-size", "missing-key", "unknown-key"],
)
def test_invalid_params_stop_before_any_job(tmp_path, change, message):
    params = json.loads(json.dumps(TINY_PARAMS))
    change(params)
    project = make_project(tmp_path, params)
    result = snakemake(project, "--dry-run", check=False)
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr, flags=re.S), result.stdout + result.stderr
    assert not (project / "data").exists()


def test_bench_writes_its_figures_for_a_finished_study(study, tmp_path):
    result = subprocess.run(
        [str(BIN / "taskvec"), "bench", "--models", "smollm2-135m", "--task", "to_upper", "--repeats", "1",
         "--no-workload", "--device", "cpu", "--out", str(tmp_path)],
        cwd=study, env=_env(), capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / "benchmarks.json").read_text())["models"]["smollm2-135m"]
    assert set(figures) >= {"sweep_ratio", "sweep_limit", "naive_speedup", "extraction_overhead", "study_seconds",
                            "peak_rss_mb"}
    assert 1 < figures["sweep_limit"] < figures["naive_ratio"]
    assert figures["study_jobs"] == 2  # one evaluate_task job per task; the model was converted beforehand
    assert "| smollm2-135m |" in (tmp_path / "benchmarks.md").read_text()
