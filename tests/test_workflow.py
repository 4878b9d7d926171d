"""The Snakemake workflow and DVC stage on a tiny study (the real smollm2-135m, two tasks, a few
prompts) in a temporary directory: outputs, incremental reruns, determinism, config validation."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import (
    BIN,
    TINY_PARAMS,
    _dvc,
    _env,
    _git,
    copy_tree,
    make_project,
    planned_jobs,
    snakemake,
)
from taskvec.evaluate import score
from taskvec.extract import read_activations

pytestmark = pytest.mark.workflow


def _results(study: Path, task: str) -> list:
    return [
        score(pq.read_table(study / "data" / "results" / "smollm2-135m" / task / f"sample{i}.parquet"))
        for i in range(2)
    ]


def test_study_writes_a_report_that_agrees_with_its_parquet_files(study):
    report = study / "reports"
    html = (report / "index.html").read_text()
    assert "<img" in html and "data:image/png;base64," in html and 'src="http' not in html
    metrics = json.loads((report / "metrics.json").read_text())
    model = metrics["models"]["smollm2-135m"]
    assert model["n_layers"] == 30
    assert set(model["tasks"]) == {"next_letter", "to_upper", "country_currency"}
    assert model["tasks"]["country_currency"]["category"] == "custom"
    assert model["tasks"]["country_currency"]["rules"] == {
        "one_token": True,
        "leading_space": "auto",
        "scoring": "exact",
    }
    assert model["tasks"]["next_letter"]["rules"] == {"one_token": False, "leading_space": "off", "scoring": "exact"}
    assert "country_currency.jsonl" in html
    rows = {row["task"]: row for row in csv.DictReader((report / "tables" / "accuracy.csv").open())}
    for task, entry in model["tasks"].items():
        assert entry["n_test"] == 12 and entry["seeds"] == [0, 1]
        samples = _results(study, task)
        for method in ("baseline", "icl", "tv", "baseline_strict", "icl_strict", "tv_strict"):
            mean = sum(getattr(s, method) for s in samples) / 2
            assert entry[method] == pytest.approx(mean, abs=1e-4)
            low, high = entry[f"{method}_ci"]
            assert low - 1e-9 <= entry[method] <= high + 1e-9 and high > low
            assert float(rows[task][method]) == pytest.approx(entry[method])
            assert float(rows[task][f"{method}_ci_low"]) == pytest.approx(low)
        assert entry["best_layers"] == [s.best_layer for s in samples]
        assert 0 <= entry["tv_vs_icl_p"] <= 1
        assert f"{entry['icl']:.2f}" in html
        for sample in ("sample0", "sample1"):
            path = study / "data" / "activations" / "smollm2-135m" / task / f"{sample}.parquet"
            vectors, meta = read_activations(path)
            assert len(vectors) == 12 and next(iter(vectors.values())).shape == (30, 576)
            assert str(pq.read_schema(path).field("vector").type) == "fixed_size_list<element: float>[576]"
    for name in ("accuracy_by_layer", "accuracy_summary", "conflicting_tasks", "tsne", "distances"):
        assert (report / "figures" / f"{name}_smollm2-135m.png").read_bytes()[:4] == b"\x89PNG"
        assert b"<svg" in (report / "figures" / f"{name}_smollm2-135m.svg").read_bytes()[:500]
    paper = {row["task"]: row for row in csv.DictReader((report / "tables" / "paper_comparison.csv").open())}
    assert float(paper["to_upper"]["paper_icl"]) == pytest.approx(metrics["paper_mean_over_models"]["to_upper"]["icl"])
    assert paper["country_currency"]["paper_icl"] == ""
    for section in (
        "Summary",
        "Comparison with the paper",
        "Provenance of data and models",
        "Conflicting tasks",
        "Robustness of theta",
        "Vocabulary projection",
        "Extended studies",
        "Method and settings",
        "Time per step",
    ):
        assert f">{section}</h2>" in html
    assert "| model | task |" in (report / "tables" / "accuracy.md").read_text()


def test_the_analyses_agree_with_their_tables_and_metrics(study):
    report = study / "reports"
    model = json.loads((report / "metrics.json").read_text())["models"]["smollm2-135m"]
    conflict = model["conflicting_tasks"]["next_letter/to_upper"]
    row = next(csv.DictReader((report / "tables" / "conflicting_tasks.csv").open()))
    assert (row["task_a"], row["task_b"]) == ("next_letter", "to_upper")
    assert float(row["patched_on_b"]) == pytest.approx(conflict["patched_on_b"])
    assert row["overrides"] == str(conflict["overrides"])
    table = pq.read_table(study / "data" / "analysis" / "smollm2-135m" / "conflicting_tasks.parquet").to_pydict()
    assert len(table["index"]) == 6 and all(table["b_defined"])
    assert conflict["patched_on_b"] == pytest.approx(sum(table["patched_correct_b"]) / 6, abs=1e-4)
    # ICL alone is read from next_letter's results, not recomputed
    icl = pq.read_table(study / "data" / "results" / "smollm2-135m" / "next_letter" / "sample0.parquet").to_pydict()
    icl_test = {
        i: p
        for i, s, m, p in zip(icl["index"], icl["split"], icl["method"], icl["prediction"])
        if s == "test" and m == "icl"
    }
    assert table["icl_prediction"] == [icl_test[i] for i in table["index"]]

    robustness = model["robustness"]
    assert robustness["n_vectors"] == 36  # 3 tasks x 12 dev and test prompts of the first split seed
    assert 0 <= robustness["nearest_centroid_accuracy"] <= 1
    tsne = pq.read_table(study / "data" / "analysis" / "smollm2-135m" / "robustness.parquet")
    assert tsne.num_rows == 36 and set(tsne.column("task").to_pylist()) == set(model["tasks"])
    vocab = list(csv.DictReader((report / "tables" / "vocabulary.csv").open()))
    assert {row["task"] for row in vocab} == set(model["tasks"])
    chosen = [row for row in vocab if row["layer_kind"] == "chosen"]
    assert len(chosen) == 3 and all(
        int(row["layer"]) == model["tasks"][row["task"]]["best_layers"][0] for row in chosen
    )
    assert all(int(row["layer"]) == 29 for row in vocab if row["layer_kind"] == "last")
    judged = model["vocabulary_projection"]["chosen"]
    assert judged["n_tasks"] == 3 and 0 <= judged["n_naming_outputs"] <= 3


def test_snakemake_report_packages_the_figures_with_captions(study, tmp_path):
    out = tmp_path / "snakemake-report.zip"
    snakemake(study, "--report", str(out))
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        text = " ".join(archive.read(n).decode("utf-8", "ignore") for n in names if n.endswith((".html", ".js")))
    assert any(n.endswith("tsne_smollm2-135m.png") for n in names)
    assert "Conflicting tasks: the demonstrations show task A" in text


def test_a_completed_study_has_nothing_left_to_do(study):
    assert planned_jobs(study) == []


@pytest.mark.parametrize("module", ["html.py", "figures.py"], ids=["report-text", "figure-style"])
def test_changing_report_code_reruns_only_the_report(study, module):
    html_code = study / "src" / "taskvec" / "report" / module
    original = html_code.read_text()
    try:
        html_code.write_text(original + "\n")
        assert planned_jobs(study) == [("build_report", "")]
    finally:
        html_code.write_text(original)
        snakemake(study, "--touch")


def planned_jobs_with_appended(study: Path, relative: str, text: str) -> list[tuple[str, str]]:
    """What a dry run would execute with ``text`` appended to a file (restored and touched afterwards)."""
    path = study / relative
    original = path.read_text()
    try:
        path.write_text(original + text)
        return planned_jobs(study)
    finally:
        path.write_text(original)
        snakemake(study, "--touch")


def test_editing_a_custom_task_file_reruns_only_that_task(study):
    jobs = planned_jobs_with_appended(
        study, "examples/tasks/country_currency.jsonl", '{"input": "Atlantis", "output": "Orichalcum"}\n'
    )
    assert {rule for rule, _ in jobs} == {
        "build_report",
        "build_task",
        "extract_activations",
        "evaluate_task",
        "robustness",
        "vocabulary_projection",
    }
    task_jobs = [w for rule, w in jobs if rule in ("build_task", "extract_activations", "evaluate_task")]
    assert len(task_jobs) == 3 and all("country_currency" in w for w in task_jobs)


def planned_jobs_with_params(study: Path, change) -> list[tuple[str, str]]:
    """What a dry run would execute with params.yaml changed by ``change`` (restored afterwards)."""
    params_file = study / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    change(params)
    try:
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        return planned_jobs(study)
    finally:
        params_file.write_text(original)


def test_changing_one_tasks_setting_reruns_only_that_task(study):
    jobs = planned_jobs_with_params(study, lambda p: p["tasks"]["to_upper"].update(seed=5))
    assert {rule for rule, _ in jobs} == {
        "build_report",
        "build_task",
        "extract_activations",
        "evaluate_task",
        "robustness",
        "vocabulary_projection",
        "conflicting_tasks",
    }
    task_jobs = [w for rule, w in jobs if rule in ("build_task", "extract_activations", "evaluate_task")]
    assert len(task_jobs) == 3 and all("to_upper" in w for w in task_jobs)


def test_adding_a_model_runs_only_that_models_jobs(study):
    jobs = planned_jobs_with_params(
        study, lambda p: p["models"].update({"gemma3-270m": {"source": "packaged:gemma3-270m"}})
    )
    per_model = [(rule, w) for rule, w in jobs if rule != "build_report"]
    assert {rule for rule, _ in per_model} == {
        "convert_model",
        "extract_activations",
        "evaluate_task",
        "conflicting_tasks",
        "robustness",
        "vocabulary_projection",
    }
    assert all("model=gemma3-270m" in w for _, w in per_model), per_model
    for rule in ("extract_activations", "evaluate_task"):
        assert len([r for r, _ in per_model if r == rule]) == len(TINY_PARAMS["tasks"])


EVERY_TASK = sorted(f"model=smollm2-135m, task={task}" for task in TINY_PARAMS["tasks"])


# one module each way here: which step reads which module is checked for every module by
# test_cli.py::test_each_steps_code_inputs_are_what_its_command_runs; these check Snakemake's plan
@pytest.mark.parametrize("module", ["hooks/capture.py"])
def test_changing_extraction_code_reruns_extraction_and_everything_after_it(study, module):
    jobs = planned_jobs_with_appended(study, f"src/taskvec/{module}", "\n")
    assert sorted({rule for rule, _ in jobs}) == [
        "build_report",
        "conflicting_tasks",
        "evaluate_task",
        "extract_activations",
        "robustness",
        "vocabulary_projection",
    ]
    assert sorted(w for rule, w in jobs if rule == "extract_activations") == EVERY_TASK
    assert sorted(w for rule, w in jobs if rule == "evaluate_task") == EVERY_TASK


@pytest.mark.parametrize("module", ["scoring.py", "hooks/patch.py"])
def test_changing_scoring_or_patching_code_reruns_evaluation_and_no_extraction(study, module):
    """The activation cache serves the study's own evaluation: a change to how the bare queries are
    patched or scored plans every evaluation job and what reads the results, and no extraction, task
    build or model conversion."""
    jobs = planned_jobs_with_appended(study, f"src/taskvec/{module}", "\n")
    rules = {rule for rule, _ in jobs}
    assert "evaluate_task" in rules and sorted(w for rule, w in jobs if rule == "evaluate_task") == EVERY_TASK
    assert not rules & {"extract_activations", "build_task", "convert_model"}, sorted(rules)


def test_a_corrupted_results_file_is_named_with_the_command_that_rebuilds_it(study):
    path = study / "data" / "results" / "smollm2-135m" / "to_upper" / "sample1.parquet"
    original = path.read_bytes()
    stat = path.stat()
    try:
        path.write_bytes(original[: len(original) // 2])
        # the study's profile shows a failed job's log, as `make reproduce` does
        result = snakemake(study, "--forcerun", "build_report", check=False)
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    named = re.search(
        r"(?s)to_upper/sample1.parquet is not a readable Parquet file: truncated or corrupted .*"
        r"to fix: delete it; `taskvec evaluate` makes it\n.*in a study: `make reproduce` remakes",
        result.stdout + result.stderr,
    )
    snakemake(study, "--forcerun", "build_report")  # the report again, for the tests that share the study
    assert result.returncode != 0
    assert named, result.stderr
    assert planned_jobs(study) == []


def test_sigkill_during_extraction_then_rerun_gives_byte_identical_results(study):
    """Runs the fault-injection script (tests/fault_injection.py) on the tiny study."""
    script = Path(__file__).with_name("fault_injection.py")
    result = subprocess.run(
        [str(BIN / "python"), str(script), str(study), "--task", "to_upper"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "byte-identical" in result.stdout and "none partial" in result.stdout
    assert planned_jobs(study) == []


def test_a_fresh_clone_pulls_the_artifacts_and_recomputes_nothing(reproduced, tmp_path):
    """The README's sharing recipe, step by step: producer `dvc repro` (the fixture's) + `dvc push`;
    consumer `git clone`, then `make pull` (that is `dvc pull` and `snakemake --touch`)."""
    producer, consumer, remote = tmp_path / "producer", tmp_path / "consumer", tmp_path / "remote"
    copy_tree(reproduced, producer)
    _dvc(producer, "remote", "add", "-d", "shared", str(remote))
    _git(producer, "add", "-A")
    _git(producer, "commit", "-q", "-m", "the team's remote")
    _dvc(producer, "push")

    _git(tmp_path, "clone", "-q", str(producer), str(consumer))
    assert not (consumer / "data").exists()
    _dvc(consumer, "pull", "study")  # what `make pull` runs:
    _dvc(consumer, "pull", "--allow-missing", "extended")  # the producer ran `make reproduce` alone
    assert not (consumer / "data" / "extended").exists()
    snakemake(consumer, "--touch", "--quiet")
    assert "up to date" in _dvc(consumer, "status", "study").stdout
    assert planned_jobs(consumer) == []
    for step in ("activations", "results"):
        for path in (producer / "data" / step).rglob("*.parquet"):
            assert (consumer / path.relative_to(producer)).read_bytes() == path.read_bytes()
    # The report builds from the pulled files alone: nothing upstream of it runs.
    assert planned_jobs(consumer, "--forcerun", "build_report") == [("build_report", "")]
    snakemake(consumer, "--forcerun", "build_report")
    assert (consumer / "reports" / "metrics.json").read_bytes() == (producer / "reports" / "metrics.json").read_bytes()


def test_rerunning_gives_byte_identical_outputs(study):
    outputs = [
        study / "data" / step / "smollm2-135m" / "country_currency" / "sample1.parquet"
        for step in ("prompts", "activations", "icl", "results")
    ]
    outputs += [
        study / "data" / "analysis" / "smollm2-135m" / f"{name}.parquet"
        for name in ("conflicting_tasks", "robustness", "vocabulary")
    ]
    outputs += [study / "reports" / "metrics.json", study / "reports" / "tables" / "accuracy.csv"]
    outputs += sorted((study / "reports" / "figures").iterdir())
    before = [path.read_bytes() for path in outputs]
    html_before = _without_timings((study / "reports" / "index.html").read_text())
    snakemake(
        study,
        "--forcerun",
        *("extract_activations", "evaluate_task", "conflicting_tasks", "robustness", "vocabulary_projection"),
    )
    assert [path.read_bytes() for path in outputs] == before
    # The report's last section gives the measured time of each step, which differs run to run.
    assert _without_timings((study / "reports" / "index.html").read_text()) == html_before
    assert planned_jobs(study) == []


def _without_timings(html: str) -> str:
    return html[: html.index("<h2 id='time'>") if "<h2 id='time'>" in html else html.index('<h2 id="time">')]


def test_dvc_repro_then_status_is_clean(reproduced, tmp_path):
    study = tmp_path / "project"  # after `dvc repro study` (the fixture's)
    copy_tree(reproduced, study)
    status = subprocess.run(
        [str(BIN / "dvc"), "status", "study"], cwd=study, env=_env(), capture_output=True, text=True
    )
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + status.stderr
    assert planned_jobs(study) == []
    # a user's task file is a dependency of the stage: editing it is a change DVC sees
    task_file = study / "examples" / "tasks" / "country_currency.jsonl"
    original = task_file.read_text()
    try:
        task_file.write_text(original + '{"input": "Atlantis", "output": "Orichalcum"}\n')
        edited = subprocess.run(
            [str(BIN / "dvc"), "status", "study"], cwd=study, env=_env(), capture_output=True, text=True
        )
        assert "modified:" in edited.stdout and "examples" in edited.stdout, edited.stdout
    finally:
        task_file.write_text(original)
    # the plots declared in dvc.yaml render from the report's tables
    plots = subprocess.run(
        [str(BIN / "dvc"), "plots", "show", "-o", str(study / "plots")],
        cwd=study,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert plots.returncode == 0, plots.stdout + plots.stderr
    page = (study / "plots" / "index.html").read_text()
    assert "reports_tables_accuracy_by_layer_csv" in page and "dev_tv" in page


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda p: p["tasks"].update(reverse_words={"seed": 0}),
            r"tasks.reverse_words is not a built-in task.*next_letter",
        ),
        (lambda p: p["tasks"].update(mine={"file": "missing.txt"}), r"does not match"),
        (lambda p: p["tasks"].update(bad={"file": "examples/tasks/missing.jsonl"}), r"missing.jsonl"),
        (
            lambda p: p["models"].update(tiny={"source": "packaged:gpt5"}),
            r"models.tiny.source.*packaged:smollm2-135m, packaged:gemma3-270m",
        ),
        (lambda p: p["sizes"].update(k="five"), r"'five' is not of type 'integer'"),
        (lambda p: p["sizes"].update(test=0), r"0 is less than the minimum of 1"),
        (lambda p: p.pop("sizes"), r"'sizes' is a required property"),
        (lambda p: p.update(extra=1), r"Additional properties are not allowed \('extra'"),
        (lambda p: p["sizes"].update(dev=-3), r"-3 is less than the minimum of 1"),
        (lambda p: p["sizes"].update(k=30), r"tasks.next_letter has 25 pairs, but each prompt draws 33.*sizes.k=30"),
        (lambda p: p["models"].update({"../evil": {"source": "packaged:smollm2-135m"}}), r"'../evil' does not match"),
        (lambda p: p["tasks"].update({"a/b": {"seed": 0}}), r"'a/b' does not match"),
        (lambda p: p["tasks"].update({"x;rm": {"seed": 0}}), r"'x;rm' does not match"),
        (lambda p: p["models"].update(bad={"source": "org/model;touch pwned"}), r"'org/model;touch pwned' does not"),
        (
            lambda p: p["tasks"]["to_upper"].update(leading_space="maybe"),
            r"'maybe' is not one of \['auto', 'on', 'off', True, False\]",
        ),
        (lambda p: p["tasks"]["to_upper"].update(scoring="fuzzy"), r"'fuzzy' is not one of \['exact', 'prefix'\]"),
    ],
    ids=[
        "unknown-task",
        "bad-task-file-type",
        "missing-task-file",
        "unknown-packaged-model",
        "wrong-type",
        "zero-size",
        "missing-key",
        "unknown-key",
        "negative-size",
        "k-above-available-pairs",
        "model-name-path",
        "task-name-slash",
        "task-name-shell",
        "model-source-shell",
        "unknown-leading-space",
        "unknown-scoring",
    ],
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
        [
            str(BIN / "taskvec"),
            "bench",
            "--models",
            "smollm2-135m",
            "--task",
            "to_upper",
            "--repeats",
            "1",
            "--no-workload",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
        ],
        cwd=study,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / "benchmarks.json").read_text())["models"]["smollm2-135m"]
    assert set(figures) >= {
        "sweep_ratio",
        "sweep_limit",
        "naive_speedup",
        "extraction_overhead",
        "study_seconds",
        "peak_rss_mb",
    }
    # the limit is counted (FLOPs), the ratios timed: a test asserts what is counted and that each timing
    # was taken; how the timings compare is the benchmark's to report (it varies with the machine's load)
    assert figures["sweep_limit"] > 1 and figures["sweep_ratio"] > 0 and figures["naive_ratio"] > 0
    # implicit ICL's calibration step, at the comparison's one thread, above the time reading its weights takes
    step = figures["calibration"]
    assert step["threads"] == 1 and step["batch"] == 2 and step["over_floor"] > 1
    assert step["step_seconds"] == pytest.approx(step["forward_seconds"] + step["backward_seconds"], abs=2e-4)
    assert 500 < step["matrix_mb"] < 600 and 100 < step["output_layer_mb"] < 120  # 135M float32; 49152 x 576
    # an extraction and an evaluation job per task and three analyses (conflicting tasks, robustness,
    # vocabulary); the model was converted beforehand
    assert figures["study_jobs"] == 9
    assert "| smollm2-135m |" in (tmp_path / "benchmarks.md").read_text()


def test_bench_random_measures_the_workload_against_its_floor_and_the_targets(study, tmp_path):
    """`taskvec bench-random` (meant for a GPU) runs end to end here on a tiny random Llama: the
    workload sits above its FLOP floor, each target is reported beside its aim, the sweep's plan bound
    is at least 1, and the profiler names where each pass spends its time."""
    result = subprocess.run(
        [
            *(str(BIN / "taskvec"), "bench-random", "--shape", "tiny-llama"),
            *("--tokenizer-dir", "data/models/smollm2-135m", "--prompts-dir", "data/prompts/smollm2-135m"),
            *("--repeats", "1", "--batch-sizes", "4", "8", "--device", "cpu", "--dtype", "float32"),
            *("--out", str(tmp_path)),
        ],
        cwd=study,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    entry = json.loads((tmp_path / "benchmarks_gpu.json").read_text())["models"]["random tiny-llama"]
    for work in entry["workload"].values():
        assert work["tasks"] == 3 and work["over_floor"] > 1 and work["matmul_gflops"] > 0
        calls_floor = work["block_calls"] * work["block_call_ms"] / 1000
        assert work["block_call_share"] == pytest.approx(calls_floor / work["seconds"], rel=1e-2, abs=1e-3)
    # halving the batch size splits batches, so the blocks are called more often
    assert entry["workload"]["4"]["block_calls"] > entry["workload"]["8"]["block_calls"] > 0
    targets = entry["targets"]
    assert set(targets) == {"workload_over_floor", "sweep_over_limit", "extraction_overhead"}
    assert targets["sweep_over_limit"]["plan_flops_over_limit"] >= 1
    assert targets["workload_over_floor"]["met"] == (targets["workload_over_floor"]["measured"] <= 3.0)
    assert set(entry["profile"]) == {
        "plain forward (extraction texts)",
        "hooked forward (extraction texts)",
        "layer sweep",
        "one task's workload (next_letter)",
    }
    assert all(p["top"] and p["clock"] == "CPU" for p in entry["profile"].values())
    assert all(sum(t["share"] for t in p["top"]) <= 1.0 for p in entry["profile"].values())
    text = (tmp_path / "benchmarks.md").read_text()
    assert "| layer sweep / its compute limit |" in text and "workload / floor" in text
    assert "Where the time goes" in text


def test_a_task_listed_twice_in_params_stops_before_any_job(tmp_path):
    project = make_project(tmp_path, TINY_PARAMS)
    text = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(text.replace("  to_upper:\n", "  to_upper:\n    seed: 1\n  to_upper:\n", 1))
    result = snakemake(project, "--dry-run", check=False)
    assert result.returncode != 0
    assert re.search(r"params.yaml: line \d+: 'to_upper' appears twice", result.stdout + result.stderr), result.stderr
    assert not (project / "data").exists()


def test_a_second_run_in_the_same_directory_refuses_and_the_first_completes(study):
    first = subprocess.Popen(
        [str(BIN / "snakemake"), "--cores", "1", "--forcerun", "robustness"],
        cwd=study,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    paused = False
    try:
        locks = study / ".snakemake" / "locks"
        deadline = time.monotonic() + 300  # building the DAG takes a while on a busy machine
        while not (locks.is_dir() and any(locks.iterdir())) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        # the first run is paused while it holds its lock: its job may take less time than the second
        # run's start on a busy machine, and a run that ended has nothing left to refuse for
        first.send_signal(signal.SIGSTOP)
        paused = True
        if first.poll() is not None:  # its pipes are at their end: reading them cannot block
            output = first.stdout.read() + first.stderr.read()
            raise AssertionError(f"the first run ended before a second started:\n{output}")
        assert locks.is_dir() and any(locks.iterdir()), "the first run took no lock within 300 s"
        second = snakemake(study, "--forcerun", "build_report", check=False)
        # `taskvec run-study` (what `dvc repro` runs) sees the live run and leaves its lock alone
        third = subprocess.run(
            [str(BIN / "taskvec"), "run-study"], cwd=study, env=_env(), capture_output=True, text=True
        )
        locked_meanwhile = any(locks.iterdir())
    finally:
        if paused:
            first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=300)
    assert second.returncode != 0
    assert "cannot be locked" in second.stdout + second.stderr
    assert third.returncode != 0 and re.search(r"is locked by Snakemake and a process \(pid \d+", third.stderr), (
        third.stderr
    )
    assert locked_meanwhile
    assert first.returncode == 0, out + err
    assert planned_jobs(study) == []


TRACE_IMPORTS = """
import ast, importlib, sys
from pathlib import Path
import taskvec.cli
import taskvec.commands
subcommand = sys.argv[1]
studies = Path(taskvec.cli.__file__).parent / "studies"
declared = [p for p in sorted(studies.glob("*/__init__.py")) if f'command="{subcommand}"' in p.read_text()]
if declared:  # an extended study: the skeleton, its declaration and its step's entry module
    importlib.import_module("taskvec.commands.studies")
    study = importlib.import_module("taskvec.studies." + declared[0].parent.name).STUDY
    importlib.import_module(study.entry.partition(":")[0])
else:
    for path in sorted(Path(taskvec.commands.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        name = "cmd_" + subcommand.replace("-", "_")
        function = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
        if function is not None:
            break
    importlib.import_module("taskvec.commands." + path.stem)
    imports = [n for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom))]
    exec(compile(ast.Module(body=imports, type_ignores=[]), "imports", "exec"), {"__package__": "taskvec.commands"})
root = Path(taskvec.cli.__file__).parent
for name, module in sorted(sys.modules.items()):
    if name.split(".")[0] == "taskvec" and getattr(module, "__file__", None):
        print(Path(module.__file__).relative_to(root))
"""


def code_inputs_missing_imports(project: Path) -> dict[str, list[str]]:
    """For each rule of a study, the extended studies' included: the taskvec modules that its command
    really imports (traced by Python's import system, not by taskvec.codedeps) but that are not among
    the rule's inputs."""
    plan = snakemake(project, "--dry-run", "--forceall", "--printshellcmds", "all", "extended").stdout
    jobs = re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)((?:.*\n)*?)\n", plan, flags=re.M)
    missing: dict[str, list[str]] = {}
    traced: dict[str, set[str]] = {}
    for rule, body, command_lines in jobs:
        command = re.search(r"taskvec ([a-z-]+)", command_lines)
        inputs = re.search(r"^    input: (.*)$", body, flags=re.M)
        if not command or not inputs:
            continue
        subcommand = command.group(1)
        if subcommand not in traced:
            out = subprocess.run(
                [str(BIN / "python"), "-c", TRACE_IMPORTS, subcommand],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            traced[subcommand] = {f"src/taskvec/{name}" for name in out.split()}
        gaps = sorted(traced[subcommand] - set(inputs.group(1).split(", ")))
        if gaps:
            missing[rule] = gaps
    return missing


def test_every_rule_depends_on_every_module_its_command_imports(study):
    """A rule whose code inputs miss a module its command imports would not rerun when that module
    changes. The rules' code inputs are computed (taskvec.codedeps); this traces the imports instead."""
    assert code_inputs_missing_imports(study) == {}


def test_a_dvc_experiment_with_another_seed_reruns_only_that_task(reproduced, tmp_path):
    """The everyday loop of DVC users: `dvc exp run -S tasks.to_upper.seed=3` changes that task's
    results (and the analyses and report over it), and no other task's."""
    project = tmp_path / "experiment"
    copy_tree(reproduced, project)  # after `dvc repro study` and a commit
    results = sorted((project / "data" / "results").rglob("*.parquet"))
    before = {path: path.read_bytes() for path in results}
    env = {
        **_env(),
        "GIT_AUTHOR_NAME": "taskvec tests",
        "GIT_AUTHOR_EMAIL": "tests@example.invalid",
        "GIT_COMMITTER_NAME": "taskvec tests",
        "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    }
    experiment = subprocess.run(
        [str(BIN / "dvc"), "exp", "run", "study", "-S", "tasks.to_upper.seed=3"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert experiment.returncode == 0, experiment.stdout + experiment.stderr
    changed = [path for path in results if path.read_bytes() != before[path]]
    assert changed and all(path.parent.name == "to_upper" for path in changed), changed
    assert yaml.safe_load((project / "params.yaml").read_text())["tasks"]["to_upper"]["seed"] == 3
    shown = subprocess.run(
        [str(BIN / "dvc"), "exp", "show", "--json"], cwd=project, env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    seeds = re.findall(r'"to_upper": \{\s*"seed": (\d+)', json.dumps(json.loads(shown.stdout), indent=1))
    assert set(seeds) == {"0", "3"}, seeds  # the baseline and the experiment


def test_a_task_removed_from_params_leaves_no_stale_outputs(study, tmp_path):
    """What DVC versions is the current study: after `taskvec run-study` (what `dvc repro` runs), the
    files of a task dropped from params.yaml, and the analyses and report parts that needed it, are gone."""
    project = tmp_path / "fewer"
    copy_tree(study, project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    del params["tasks"]["to_upper"]  # next_letter:to_upper is the tiny study's conflicting pair
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run = subprocess.run([str(BIN / "taskvec"), "run-study"], cwd=project, env=_env(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "removing data/results/smollm2-135m/to_upper/sample0.parquet" in run.stderr
    for top in ("data", "reports"):
        left = [p for p in (project / top).rglob("*") if "to_upper" in p.name or "conflicting" in p.name]
        assert left == [], left
    assert sorted(p.name for p in (project / "data" / "tasks").iterdir()) == [
        "country_currency.parquet",
        "next_letter.parquet",
    ]
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert set(metrics["models"]["smollm2-135m"]["tasks"]) == {"next_letter", "country_currency"}
    assert planned_jobs(project) == []


def test_the_extended_studies_run_beside_the_study_and_leave_its_files_alone(reproduced, tmp_path):
    """`make reproduce-all` runs the `extended` target after the study: function vectors and how far the
    task vector travels (demonstrations, demonstration sets, prompt formats), for every model, into
    data/extended and reports/extended, removing what no job makes any more; the default study's
    files, report included, stay byte-identical; the default target has nothing to do afterwards, and
    a forced rerun of the extended steps gives byte-identical files."""
    project = tmp_path / "project"
    copy_tree(reproduced, project)  # after `make reproduce`
    kept = {p: p.read_bytes() for top in ("data", "reports") for p in (project / top).rglob("*") if p.is_file()}
    # what an earlier extended run of a model since dropped from params.yaml left: no job makes it now
    stale = [
        project / "data/extended/retired/travel.parquet",
        project / "reports/extended/figures/travel_k_retired.svg",
    ]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"stale")
    _dvc(project, "repro")  # `make reproduce-all`: the study stage has nothing to do, then `extended` runs
    assert not any(path.exists() for path in stale) and not (project / "data/extended/retired").exists()
    # every file the extended studies and their report write is a declared output, and every output is
    # written (the studies declare them: nothing is left for the stale-output cleanup to remove)
    from taskvec.workflow.contract import StudyLayout

    layout = StudyLayout.of(yaml.safe_load((project / "params.yaml").read_text()))
    written = {
        p.relative_to(project).as_posix()
        for top in ("data/extended", "reports/extended")
        for p in (project / top).rglob("*")
        if p.is_file()
    }
    assert written == {*layout.extended_data, *layout.extended_report_files()}
    assert "up to date" in _dvc(project, "status").stdout
    assert {p: p.read_bytes() for p in kept} == kept
    table = pq.read_table(project / "data" / "extended" / "smollm2-135m" / "travel.parquet")
    data = table.to_pydict()
    assert set(data["task"]) == set(TINY_PARAMS["tasks"])
    assert {(e, v) for e, v in zip(data["experiment"], data["value"])} == {
        *(("k", k) for k in (1, 2, 3, 5, 10)),
        *(("contexts", m) for m in (1, 2, 4, 8)),
    }
    # at k = 5 the prompts are the study's own: ICL there is the results file's ICL on the same test prompts
    keys = zip(data["task"], data["experiment"], data["value"], data["method"])
    icl = {i: c for key, i, c in zip(keys, data["index"], data["correct"]) if key == ("to_upper", "k", 5, "icl")}
    results = pq.read_table(project / "data" / "results" / "smollm2-135m" / "to_upper" / "sample0.parquet").to_pydict()
    study_icl = {
        i: c
        for i, s, m, c in zip(results["index"], results["split"], results["method"], results["correct"])
        if (s, m) == ("test", "icl")
    }
    assert icl == study_icl
    # prompt formats: in the study's own format the prompts are the study's, so ICL and the task vector
    # (at the study's layer) are the results file's, prompt by prompt
    formats = pq.read_table(project / "data" / "extended" / "smollm2-135m" / "formats.parquet")
    meta = json.loads(formats.schema.metadata[b"taskvec"])
    assert [f["name"] for f in meta["formats"]] == ["paper", "arrow", "qa", "input_output", "tab"]
    assert meta["query_tokens"]["to_upper"]["qa"]["tokens"][:2] == ["Q", ":"]
    rows = formats.to_pydict()
    # per task, test prompt and target format: ICL, the bare query, theta from each of the 5 formats, and
    # the interventions (theta at the format's own layer; the bare query after a prefix, plain and patched)
    assert set(rows["task"]) == set(TINY_PARAMS["tasks"]) and len(rows["task"]) == 3 * 6 * 5 * (1 + 1 + 5 + 3)
    assert set(rows["method"]) == {"icl", "bare", "tv", "tv_own_layer", "bare_prefixed", "tv_prefixed"}
    keys = list(zip(rows["task"], rows["target"], rows["source"], rows["method"]))
    layer = meta["layers"]["to_upper"]
    for key, method in ((("to_upper", "paper", "", "icl"), "icl"), (("to_upper", "paper", "paper", "tv"), "tv")):
        mine = {i: c for k, i, c in zip(keys, rows["index"], rows["correct"]) if k == key}
        theirs = {
            i: c
            for i, s, m, c, lay in zip(
                results["index"], results["split"], results["method"], results["correct"], results["layer"]
            )
            if (s, m) == ("test", method) and (method == "icl" or lay == layer)
        }
        assert mine == theirs, key
    page = (project / "reports" / "extended" / "index.html").read_text()
    assert "<h2 id='travel'>How far the task vector travels</h2>" in page
    assert "<h3 id='formats'>Prompt formats</h3>" in page and "theta from \\ into" in page
    assert (project / "reports" / "extended" / "figures" / "headline.svg").exists()
    assert (project / "reports" / "extended" / "figures" / "formats_transfer_smollm2-135m.svg").exists()
    assert (project / "reports" / "extended" / "tables" / "formats_transfer.csv").exists()
    assert "Averaging theta over 8 demonstration sets instead of 1" in page or "no mean is given" in page
    metrics = json.loads((project / "reports" / "extended" / "metrics.json").read_text())
    assert set(metrics["models"]["smollm2-135m"]["tasks"]) == set(TINY_PARAMS["tasks"])
    assert (project / "reports" / "extended" / "figures" / "travel_k_smollm2-135m.svg").exists()
    fv = json.loads((project / "reports" / "extended" / "metrics.json").read_text())["models"]["smollm2-135m"]
    assert set(fv["tasks"]["to_upper"]) >= {
        *("fv", "fv_ci", "shuffled_icl", "random_vector", "kl_tv", "kl_fv", "tv_by_k", "tv_by_format")
    }
    assert set(fv["formats"]["formats"]) == {"paper", "arrow", "qa", "input_output", "tab"}
    assert fv["function_vectors"]["n_heads"] == 6 and "Task vectors and function vectors" in page
    _check_methods(project, metrics["models"]["smollm2-135m"], page)
    main = json.loads((project / "reports" / "metrics.json").read_text())["models"]["smollm2-135m"]
    assert "function_vectors" not in main and "fv" not in main["tasks"]["to_upper"]
    assert planned_jobs(project) == []
    assert planned_jobs(project, "extended") == []
    tops = (project / "data" / "extended", project / "reports" / "extended")
    before = {p: p.read_bytes() for top in tops for p in top.rglob("*") if p.is_file()}
    snakemake(project, "extended", "--forcerun", "function_vectors", "travel", "formats", "compare_methods")
    assert {p: p.read_bytes() for p in before} == before


def _check_methods(project: Path, metrics: dict, page: str) -> None:
    """The methods compared: every method on every test prompt of every task with a pool, the task-level
    task vector's rows equal theta of the file's pool patched at its dev block, recomputed here; the
    report's section, figures and per-model metrics."""
    from taskvec import methods as vector_methods
    from taskvec.forward.patched import patched_next_tokens
    from taskvec.models import load_model
    from taskvec.prompts import apply_rules, read_prompts
    from taskvec.studies.methods.step import task_pool
    from taskvec.tasks.base import read_pairs

    table = pq.read_table(project / "data" / "extended" / "smollm2-135m" / "methods.parquet")
    meta = json.loads(table.schema.metadata[b"taskvec"])
    rows = table.to_pydict()
    assert meta["pool"] == 2 and set(meta["methods"]) == set(vector_methods.names())
    with_pool = [t for t, entry in meta["tasks"].items() if entry["pool_sets"]]
    assert with_pool and set(meta["tasks"]) == set(TINY_PARAMS["tasks"])
    names = {"bare", "icl", "tv_per_prompt", *vector_methods.names()}
    for task in with_pool:
        seen = {(m, c) for t, m, c in zip(rows["task"], rows["method"], rows["control"]) if t == task}
        kinds = ("random", "other_task", "deranged_labels", "random_labels")
        controls = {(m, c) for m in vector_methods.names() for c in kinds}
        icl_controls = {("icl", "deranged_labels"), ("icl", "random_labels")}  # ICL without the mapping
        assert seen == {(m, "") for m in names} | controls | icl_controls, task
        assert 0 <= meta["tasks"][task]["bare_dev_accuracy"] <= 1
        assert meta["tasks"][task]["kept_labels"]["deranged_labels"] < 0.2  # a derangement keeps (almost) none
    for t in with_pool:
        entry = meta["tasks"][t]
        assert len(entry["head_agreement"]["exact_effects"]) == meta["n_layers"]
        assert 0 <= entry["head_agreement"]["recall"] <= 1
        assert all(entry["methods"][m]["kl_from_icl"] >= 0 for m in vector_methods.names())
        assert entry["methods"]["function_vector_attribution"]["extract_backward_positions"] > 0
        assert entry["methods"]["function_vector"]["extract_backward_positions"] == 0  # no gradient there
        trained = entry["methods"]["implicit_icl"]
        assert trained["training"]["steps"] == meta["calibration_steps"] == 20 and trained["configurations"] == 1
        assert trained["extract_backward_positions"] > 0 and trained["training"]["examples"] > 0
    assert meta["methods"]["implicit_icl"]["trainable_parameters"] == 4 * meta["n_layers"]
    assert all(meta["methods"][m]["trainable_parameters"] == 0 for m in vector_methods.names() if m != "implicit_icl")
    task = with_pool[0]
    prompts, info = read_prompts(project / "data" / "prompts" / "smollm2-135m" / task / "sample0.parquet")
    lm = load_model(project / "data" / "models" / "smollm2-135m", device="cpu", dtype="float32")
    usable, _ = apply_rules(read_pairs(project / "data" / "tasks" / f"{task}.parquet"), lm.tokenizer, info.task.rules)
    pool, _ = task_pool(
        prompts, [(p.input, p.answers[0]) for p in usable], 2, info.sizes.k, info.sizes.dummies, f"pool:0:{task}"
    )
    method = vector_methods.get("task_vector")
    theta = method.extract(lm, pool, info.format, 8).values
    layer = meta["tasks"][task]["methods"]["task_vector"]["layer"]
    test = sorted((p for p in prompts if p.split == "test"), key=lambda p: p.index)
    texts = [info.format.query.format(x=p.query) for p in test]
    expected = patched_next_tokens(lm, texts, method.intervention(theta, layer, 1.0, len(texts)), 8)
    got = {
        i: t
        for t2, m, c, i, t in zip(rows["task"], rows["method"], rows["control"], rows["index"], rows["token_id"])
        if (t2, m, c) == (task, "task_vector", "")
    }
    assert [got[p.index] for p in test] == [int(t) for t in expected]
    assert "<h2 id='methods'>Methods compared</h2>" in page and "Two regimes, never ranked together" in page
    for name in ("methods_cost", "methods_tasks"):
        assert (project / "reports" / "extended" / "figures" / f"{name}_smollm2-135m.svg").exists()
    assert (project / "reports" / "extended" / "tables" / "methods.csv").exists()
    assert set(metrics["methods"]) >= {"tasks", "no_pool"}
    per_task = metrics["tasks"][task]["methods"]
    assert set(per_task) >= names and all(len(v["ci"]) == 2 for v in per_task.values())
