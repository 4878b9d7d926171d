"""The workflow on a real Slurm: a one-node cluster on this machine (tests/slurm_cluster.py), the
tiny study submitted through `snakemake --executor slurm` with the project's Slurm profile (its
(model, task) jobs grouped into one allocation), every job seen by Slurm's accounting, every output
equal byte for byte to the local run's."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN, TINY_PARAMS, copy_tree, make_project
from slurm_cluster import (
    ACCOUNT,
    SlurmUnavailable,
    _clear_if_dead,
    _left_by_a_test,
    _stop_left_daemons,
    local_slurm,
    machine_lock,
)
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


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_cluster_on_the_machine_waits_for_the_first_and_a_dead_holder_frees_it(tmp_path):
    """Two checkouts tested at once on one machine share /etc/slurm: the second waits (here: gives up
    after its timeout, saying why) while the first lives, and takes the lock once the first is killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(SlurmUnavailable, match="another test run's Slurm cluster held"), machine_lock(tmp_path, 2):
            pass
        assert time.monotonic() - started >= 2
    finally:
        holder.kill()
        holder.wait()
    with machine_lock(tmp_path, 5):
        pass


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_a_killed_runs_slurm_daemons_are_stopped_and_nothing_else(tmp_path):
    """Only a live process of a Slurm daemon's name, at the pid its file gives, is stopped: a pid
    reused by another program is left alone."""
    daemon = tmp_path / "slurmd"
    shutil.copy(shutil.which("sleep"), daemon)
    left = subprocess.Popen([str(daemon), "600"])
    other = subprocess.Popen(["sleep", "600"])
    try:
        # Popen returns once the child's close-on-exec descriptors are closed, a moment before the
        # kernel gives the process its new name
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and {_comm(left.pid), _comm(other.pid)} != {"slurmd", "sleep"}:
            time.sleep(0.01)
        (tmp_path / "slurmd.pid").write_text(f"{left.pid}\n")
        (tmp_path / "slurmctld.pid").write_text(f"{other.pid}\n")
        (tmp_path / "slurmdbd.pid").write_text("999999999\n")
        _stop_left_daemons(tmp_path)
        assert left.wait(timeout=10) == -9
        assert other.poll() is None
    finally:
        for process in (left, other):
            process.kill()
            process.wait()
