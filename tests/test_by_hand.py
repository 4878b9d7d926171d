"""The README's by-hand path (build-task, make-prompts, extract, evaluate, report) runs the study's
functions and writes what the study's two steps (`extract-task`, then `evaluate`) write: the same
files with the same metadata, naming model, task and split seed, so the report names the model
without reading it from a path."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from taskvec import store

pytestmark = pytest.mark.model

SIZES = ["--k", "3", "--n-baseline", "4", "--n-dev", "4", "--n-test", "4", "--n-dummies", "2"]
COMPUTE = ["--device", "cpu", "--dtype", "float32", "--batch-size", "4", "--no-progress"]


def test_by_hand_steps_write_what_the_study_writes_and_the_report_names_the_model(smollm2_dir, tmp_path):
    task = tmp_path / "to_upper.parquet"
    run_cli("build-task", "to_upper", "--out", str(task))
    hand = tmp_path / "anywhere"  # a layout that says nothing about the model or the task
    run_cli(
        "make-prompts",
        "--task-file",
        str(task),
        "--model-dir",
        str(smollm2_dir),
        "--seed",
        "7",
        *SIZES,
        "--out",
        str(hand / "p.parquet"),
    )
    run_cli(
        "extract",
        "--model-dir",
        str(smollm2_dir),
        "--prompts",
        str(hand / "p.parquet"),
        *COMPUTE,
        "--out",
        str(hand / "a.parquet"),
        "--icl-out",
        str(hand / "i.parquet"),
    )
    run_cli(
        "evaluate",
        "--model-dir",
        str(smollm2_dir),
        "--prompts",
        str(hand / "p.parquet"),
        "--activations",
        str(hand / "a.parquet"),
        "--icl",
        str(hand / "i.parquet"),
        *COMPUTE,
        "--out",
        str(hand / "r.parquet"),
    )
    study = tmp_path / "study"
    run_cli(
        "extract-task",
        "--task-file",
        str(task),
        "--model-dir",
        str(smollm2_dir),
        "--seeds",
        "7",
        *SIZES,
        *COMPUTE,
        "--prompts-out",
        str(study / "p.parquet"),
        "--activations-out",
        str(study / "a.parquet"),
        "--icl-out",
        str(study / "i.parquet"),
    )
    run_cli(
        "evaluate",
        "--model-dir",
        str(smollm2_dir),
        "--prompts",
        str(study / "p.parquet"),
        "--activations",
        str(study / "a.parquet"),
        "--icl",
        str(study / "i.parquet"),
        *COMPUTE,
        "--out",
        str(study / "r.parquet"),
    )

    for name in ("p.parquet", "a.parquet", "i.parquet", "r.parquet"):
        by_hand, by_study = store.parquet_metadata(hand / name), store.parquet_metadata(study / name)
        assert by_hand == by_study, name
        assert (by_hand["model_name"], by_hand["task"]["task"], by_hand["seed"]) == ("smollm2-135m", "to_upper", 7)
        assert pq.read_table(hand / name).equals(pq.read_table(study / name)), name

    report = tmp_path / "report"
    run_cli("report", str(hand / "r.parquet"), "--out", str(report))
    metrics = json.loads((report / "metrics.json").read_text())
    assert list(metrics["models"]) == ["smollm2-135m"]
    assert list(metrics["models"]["smollm2-135m"]["tasks"]) == ["to_upper"]


def test_evaluate_refuses_task_vectors_of_another_prompts_file(smollm2_dir, tmp_path):
    task = tmp_path / "to_upper.parquet"
    run_cli("build-task", "to_upper", "--out", str(task))
    for seed in ("1", "2"):
        run_cli(
            "make-prompts",
            "--task-file",
            str(task),
            "--model-dir",
            str(smollm2_dir),
            "--seed",
            seed,
            *SIZES,
            "--out",
            str(tmp_path / f"p{seed}.parquet"),
        )
    run_cli(
        "extract",
        "--model-dir",
        str(smollm2_dir),
        "--prompts",
        str(tmp_path / "p1.parquet"),
        *COMPUTE,
        "--out",
        str(tmp_path / "a1.parquet"),
        "--icl-out",
        str(tmp_path / "i1.parquet"),
    )
    result = run_cli(
        "evaluate",
        "--model-dir",
        str(smollm2_dir),
        "--prompts",
        str(tmp_path / "p2.parquet"),
        "--activations",
        str(tmp_path / "a1.parquet"),
        "--icl",
        str(tmp_path / "i1.parquet"),
        *COMPUTE,
        "--out",
        str(tmp_path / "r.parquet"),
        check=False,
    )
    assert result.returncode == 1
    assert "to_upper on smollm2-135m, split seed 2 has prompts" in result.stderr
    assert "but no activations or icl file" in result.stderr and "split seed 1: activations" in result.stderr
    assert not (tmp_path / "r.parquet").exists()
