"""Running the whole study: one run per project directory, and recovery after a run that was killed.

Snakemake refuses to start while ``.snakemake/locks`` holds a lock, and a run stopped by SIGKILL (or
a power cut) never releases its lock. ``taskvec run-study`` releases such a lock (and removes the
temporaries a killed write left) only when no Snakemake or taskvec process works in the directory,
then runs the workflow; Snakemake's own metadata
marks the killed jobs incomplete and the profile's ``rerun-incomplete`` makes them again. Outputs
are written atomically, so a killed job leaves no partial file at an output path.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from taskvec.errors import StudyBusyError
from taskvec.workflow.contract import EXTENDED_VERSIONED, STUDY_VERSIONED

log = logging.getLogger(__name__)

# a plain `snakemake` in the project finds its Snakefile and default profile (profiles/default)
RUN_LOCK = "taskvec-run.lock"


def _snakemake() -> str:
    beside = Path(sys.executable).parent / "snakemake"
    return str(beside) if beside.exists() else (shutil.which("snakemake") or "snakemake")


def _is_study_process(argv: list[str]) -> bool:
    """Snakemake (as a script or ``python -m snakemake``) or a taskvec step that Snakemake started."""
    names = [Path(arg).name for arg in argv[:3]]
    return "snakemake" in names or "taskvec" in names


def processes_in(project: Path) -> list[int]:
    """Process ids of live Snakemake or taskvec processes (other than this one and its parents) whose
    working directory is ``project``, read from Linux's /proc. A process whose working directory
    cannot be read counts as one (``-1``), as does the absence of /proc: callers stay on the safe side."""
    proc = Path("/proc")
    if not proc.is_dir():
        return [-1]
    target = project.resolve()
    ours = {os.getpid(), os.getppid()}
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in ours:
            continue
        try:
            argv = [arg.decode(errors="replace") for arg in (entry / "cmdline").read_bytes().split(b"\0") if arg]
            if not _is_study_process(argv):
                continue
            cwd = Path(os.readlink(entry / "cwd"))
        except FileNotFoundError:  # the process ended meanwhile
            continue
        except OSError:  # not ours to inspect: it may be working here
            found.append(-1)
            continue
        if cwd == target or target in cwd.parents:
            found.append(int(entry.name))
    return found


def remove_stale_temporaries(project: Path) -> list[Path]:
    """Temporaries that a killed write left beside its output (``.name.*.tmp``, see
    :func:`taskvec.store.atomic_path`); only call this when no run works in ``project``."""
    stale = [path for top in ("data", "reports") for path in sorted((project / top).rglob(".*.tmp")) if path.is_dir()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def recover_from_killed_run(project: Path) -> None:
    """Release Snakemake's lock and remove the temporaries that a killed run left, if no run works
    in ``project``; otherwise refuse."""
    locks = project / ".snakemake" / "locks"
    locked = locks.is_dir() and any(locks.iterdir())
    running = processes_in(project)
    if running:
        if not locked:
            return  # a run without a lock yet, or a lone step: Snakemake decides
        who = (
            "a process (pid " + ", ".join(str(pid) for pid in running if pid > 0) + ")"
            if any(pid > 0 for pid in running)
            else "perhaps a process"
        )
        raise StudyBusyError(f"{project.resolve()} is locked by Snakemake and {who} of a study works there")
    stale = remove_stale_temporaries(project)
    if stale:
        log.warning("removed %d temporary file(s) that a killed run left beside its outputs", len(stale))
    if not locked:
        return
    log.warning(
        "a previous run in %s stopped without releasing Snakemake's lock (killed?); no run works there "
        "now, so the lock is released and the unfinished jobs run again",
        project.resolve(),
    )
    unlock = subprocess.run([_snakemake(), "--unlock"], cwd=project, capture_output=True, text=True)
    if unlock.returncode != 0:
        raise StudyBusyError(
            f"could not release Snakemake's lock in {project.resolve()}:\n{unlock.stderr.strip()}",
            fix="release it by hand: `snakemake --unlock` in that directory, once no run works there",
        )


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
            raise StudyBusyError(
                f"another study run (pid {owner}) is working in {project.resolve()}", fix="wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        recover_from_killed_run(project)
        status = _run_forwarding_signals([_snakemake(), *snakemake_args], project)
        target = " ".join(snakemake_args)
        if status == 0 and target in VERSIONED:  # a complete run of the default study or the extended ones
            remove_stale_outputs(project, target)
        return status


#: Each target's versioned folders: what a complete run of it may clean.
VERSIONED = {"": STUDY_VERSIONED, "extended": EXTENDED_VERSIONED}


def summary(project: Path, *args: str) -> list[dict[str, str]]:
    """Snakemake's machine-readable summary (``--summary``: a tab-separated table, one row per output
    file of every job of the targets in ``args``, with the rule and whether the job is planned to
    run: ``plan`` is "update pending" or "no update")."""
    result = subprocess.run([_snakemake(), "--summary", *args, "--quiet"], cwd=project, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`snakemake --summary` failed in {project.resolve()}:\n{result.stderr.strip()}")
    lines = result.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("output_file\t")), None)
    if start is None:  # Snakemake prints the header even for no job: anything else is not its summary
        raise RuntimeError(f"`snakemake --summary` printed no table in {project.resolve()}:\n{result.stdout[-2000:]}")
    header = lines[start].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[start + 1 :] if line.strip()]


def workflow_outputs(project: Path, *targets: str) -> set[Path]:
    """Every output of the jobs of ``targets`` (the default target when none) for the current params.yaml."""
    return {(project / row["output_file"]).resolve() for row in summary(project, *targets)}


def stale_outputs(project: Path, outputs: set[Path], versioned: Sequence[str] = STUDY_VERSIONED) -> list[Path]:
    """Files under the ``versioned`` folders that no job of the workflow makes, and model
    directories (with the default study's folders)."""
    stale = [
        path
        for top in versioned
        for path in sorted((project / top).rglob("*"))
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(project).parts)
        and path.resolve() not in outputs
    ]
    models = project / "data" / "models"
    if versioned == STUDY_VERSIONED and models.is_dir():
        stale += [
            path for path in sorted(models.iterdir()) if not path.name.startswith(".") and path.resolve() not in outputs
        ]
    return stale


def remove_stale_outputs(project: Path, target: str = "") -> list[Path]:
    """Remove what :func:`stale_outputs` finds for ``target`` (the default study, or "extended"), and
    the folders it leaves empty, so that what DVC versions is exactly the current study."""
    versioned = VERSIONED[target]
    stale = stale_outputs(project, workflow_outputs(project, *([target] if target else [])), versioned)
    for path in stale:
        log.warning(
            "removing %s: no job of the study makes it any more (removed from params.yaml?)", path.relative_to(project)
        )
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for top in versioned:
        for folder in sorted((project / top).rglob("*"), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    return stale


def _run_forwarding_signals(command: list[str], cwd: Path) -> int:
    """Run ``command`` and wait for it. Ctrl-C reaches Snakemake from the terminal by itself; SIGTERM
    is passed on. Either way Snakemake is left to stop its jobs and release its lock."""
    child = subprocess.Popen(command, cwd=cwd)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)
