"""The workflow on a real Slurm: a one-node cluster on this machine (tests/slurm_cluster.py), the
tiny study submitted through `snakemake --executor slurm` with the project's Slurm profile (its
(model, task) jobs grouped into one allocation), every job seen by Slurm's accounting, every output
equal byte for byte to the local run's."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, TINY_PARAMS, copy_tree, make_project
from slurm_cluster import ACCOUNT, _clear_if_dead, _left_by_a_test, local_slurm
from taskvec.workflow.contract import STUDY_VERSIONED as VERSIONED

pytestmark = pytest.mark.slurm

GPU_RULES = ("extract_activations", "evaluate_task", "conflicting_tasks", "vocabulary_projection", "function_vectors")
# The tiny study's Slurm jobs, the model being in place already: 3 task builds, one group of the 3
# tasks' extraction and evaluation jobs (the profile groups them), 3 analyses and the report (the
# function vectors are an extended study, not in the default target).
JOBS = 8
COMPARED = (*VERSIONED, "reports/metrics.json")  # what DVC versions, and the metrics


def _files(project: Path) -> dict[str, bytes]:
    found = {}
    for name in COMPARED:
        path = project / name
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            found[str(file.relative_to(project))] = file.read_bytes()
    return found


def test_the_tiny_study_through_slurm_equals_the_local_run(study, smollm2_dir, tmp_path):
    project = make_project(tmp_path, TINY_PARAMS)
    copy_tree(smollm2_dir, project / "data" / "models" / "smollm2-135m")
    os.utime(project / "data" / "models" / "smollm2-135m")
    with local_slurm(tmp_path / "slurm") as env:
        env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
        # The profile as a cluster user has it, fitted to this one small node: no GPU, less memory.
        run = subprocess.run(
            [
                str(BIN / "snakemake"),
                "--profile",
                "profiles/slurm",
                "--default-resources",
                f"slurm_account={ACCOUNT}",
                "runtime=30",
                "mem_mb=3000",
                "cpus_per_task=1",
                "--set-resources",
                *(f"{rule}:gpu=0" for rule in GPU_RULES),
                # no GPU to serialise a group on: memory does (one 3 GB job at a time per allocation)
                "--resources",
                "gpu=1",
                "mem_mb=3000",
                "--slurm-init-seconds-before-status-checks",
                "2",
            ],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        log = run.stdout + run.stderr
        assert run.returncode == 0, log[-6000:]
        ids = re.findall(r"submitted with SLURM jobid (\d+)", log)
        print("Slurm job ids:", " ".join(ids))
        assert len(ids) == JOBS, log[-6000:]
        accounting = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(ids)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        states = dict(line.split("|") for line in accounting.split())
        assert states == dict.fromkeys(ids, "COMPLETED")
    local, slurm = _files(study), _files(project)
    assert sorted(slurm) == sorted(local) and len(local) > 30
    assert [name for name in local if slurm[name] != local[name]] == []


def test_only_a_link_of_the_tests_own_counts_as_left_behind(tmp_path):
    """A killed run leaves /etc/slurm/slurm.conf linking into its gone cluster directory: the next run
    removes that link, and never a configuration of the machine's own."""
    for target, ours in (
        (tmp_path / "gone" / "slurm" / "slurm.conf", True),
        (tmp_path / "taskvec-slurm-x1" / "slurm.conf", True),
        (Path("/opt/cluster/etc/slurm.conf"), False),
        (tmp_path / "slurm" / "other.conf", False),
    ):
        link = tmp_path / f"link{len(list(tmp_path.iterdir()))}"
        link.symlink_to(target)
        assert _left_by_a_test(link) is ours, target


def test_a_daemon_socket_nothing_answers_on_is_cleared_and_a_live_one_kept(tmp_path):
    """A run killed with its daemons leaves MariaDB's and munged's sockets in /run: taken for running
    daemons, they would never be started again."""
    dead, live = tmp_path / "dead.sock", tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(str(dead))  # the file stays after the socket is closed: nothing listens on it
    (tmp_path / "dead.pid").write_text("999999")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(live))
        server.listen()
        _clear_if_dead(dead, tmp_path / "dead.pid")
        _clear_if_dead(live)
        assert not dead.exists() and not (tmp_path / "dead.pid").exists() and live.exists()
