"""Running the whole study: one run per project directory, and recovery after a run that was killed.

Snakemake refuses to start while ``.snakemake/locks`` holds a lock, and a run stopped by SIGKILL (or
a power cut) never releases its lock. ``taskvec run-study`` releases such a lock only when no
Snakemake process is working in the directory, then runs the workflow; Snakemake's own metadata
marks the killed jobs incomplete and the profile's ``rerun-incomplete`` makes them again. Outputs
are written atomically, so a killed job leaves no partial file at an output path.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

PROFILE = "workflow/profiles/local"
RUN_LOCK = "taskvec-run.lock"


class StudyBusyError(RuntimeError):
    pass


def _snakemake() -> str:
    beside = Path(sys.executable).parent / "snakemake"
    return str(beside) if beside.exists() else (shutil.which("snakemake") or "snakemake")


def snakemake_processes_in(project: Path) -> list[int]:
    """Process ids of live Snakemake processes whose working directory is ``project`` (Linux /proc).
    Returns ``[-1]`` where /proc cannot be read, so that callers stay on the safe side."""
    proc = Path("/proc")
    if not proc.is_dir():
        return [-1]
    target = project.resolve()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if not any(Path(arg.decode(errors="replace")).name == "snakemake" for arg in argv[:2]):
                continue
            if Path(os.readlink(entry / "cwd")) == target:
                found.append(int(entry.name))
        except OSError:  # the process ended meanwhile, or belongs to another user
            continue
    return found


def release_stale_lock(project: Path) -> bool:
    """Release Snakemake's lock left by a killed run; True if there was one to release."""
    locks = project / ".snakemake" / "locks"
    if not (locks.is_dir() and any(locks.iterdir())):
        return False
    running = snakemake_processes_in(project)
    if running:
        who = "a Snakemake process (pid " + ", ".join(map(str, running)) + ")" if running != [-1] else "perhaps one"
        raise StudyBusyError(f"{project.resolve()} is locked by Snakemake and {who} is working there; wait for it to "
                             "finish. If none is, run `snakemake --unlock` in that directory.")
    log.warning("a previous run in %s stopped without releasing Snakemake's lock (killed?); no Snakemake process "
                "works there now, so the lock is released and the unfinished jobs run again", project.resolve())
    subprocess.run([_snakemake(), "--profile", PROFILE, "--unlock"], cwd=project, check=True,
                   stdout=subprocess.DEVNULL)
    return True


def run_study(snakemake_args: list[str], project: Path = Path(".")) -> int:
    """Run the workflow with the project's profile; returns Snakemake's exit status."""
    state = project / ".snakemake"
    state.mkdir(exist_ok=True)
    with open(state / RUN_LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            raise StudyBusyError(f"another study run (pid {owner}) is working in {project.resolve()}; wait for it "
                                 "to finish") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        release_stale_lock(project)
        return subprocess.run([_snakemake(), "--profile", PROFILE, *snakemake_args], cwd=project).returncode
