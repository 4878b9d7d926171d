"""Command-line errors a user can hit: each says what is wrong and writes nothing."""

from __future__ import annotations

import subprocess

from conftest import BIN


def _taskvec(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "taskvec"), *args], cwd=cwd, capture_output=True, text=True)


def test_run_task_needs_one_output_file_of_each_kind_per_seed(tmp_path):
    result = _taskvec("run-task", "--task-file", "t.parquet", "--model-dir", "m", "--seeds", "0", "1",
                      "--prompts-out", "p0.parquet", "p1.parquet", "--activations-out", "a0.parquet",
                      "--results-out", "r0.parquet", "r1.parquet", cwd=tmp_path)
    assert result.returncode == 1
    assert "one prompts, activations and results file per seed (2 seeds: 2, 1 and 2 files)" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_run_task_refuses_repeated_seeds(tmp_path):
    result = _taskvec("run-task", "--task-file", "t.parquet", "--model-dir", "m", "--seeds", "3", "3",
                      "--prompts-out", "p0", "p1", "--activations-out", "a0", "a1", "--results-out", "r0", "r1",
                      cwd=tmp_path)
    assert result.returncode == 1 and "split seeds must differ" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_conflicting_tasks_rejects_a_malformed_pair(tmp_path):
    result = _taskvec("conflicting-tasks", "--model-dir", "m", "--model", "x", "--pairs", "next_letter",
                      "--out", "c.parquet", cwd=tmp_path)
    assert result.returncode == 2 and "a pair is TASK_A:TASK_B" in result.stderr
