"""Fault injection: SIGKILL a study run during activation extraction, run it again, compare hashes.

    python tests/fault_injection.py PROJECT_DIR [--model M --task T]

PROJECT_DIR holds a completed study. The script records the SHA-256 of every artifact under data/
and of reports/metrics.json, starts `taskvec run-study` with the task's extraction forced to run
again, kills the whole run (SIGKILL, every process of it) once the job has finished its first split
seed and is extracting the next, and checks throughout that every Parquet file at an output path is
readable (never a partial file). A kill in the middle of a write leaves a temporary beside the
output (never at the output path); the script plants one such leftover, as that kill would leave it.
Then it runs `taskvec run-study` again and checks that the run completes, the leftover is gone, and
every artifact is byte-identical to before. Exit status 0 when all holds; the test suite runs it on
its tiny study (tests/test_workflow.py).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

ARTIFACT_DIRS = ("tasks", "prompts", "activations", "icl", "results", "analysis")


def artifact_hashes(project: Path) -> dict[str, str]:
    files = [p for d in ARTIFACT_DIRS for p in sorted((project / "data" / d).rglob("*.parquet"))]
    files.append(project / "reports" / "metrics.json")
    return {str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


class PartialFileWatch(threading.Thread):
    """Reads the footer of every Parquet file at an output path, over and over, while the run goes on."""

    def __init__(self, project: Path) -> None:
        super().__init__(daemon=True)
        self.project, self.stop, self.problems, self.reads = project, threading.Event(), [], 0

    def run(self) -> None:
        while not self.stop.is_set():
            for directory in ARTIFACT_DIRS:
                for path in (self.project / "data" / directory).rglob("*.parquet"):
                    if any(part.startswith(".") for part in path.relative_to(self.project).parts):
                        continue  # temporaries beside the output (store.atomic_path), never an output path
                    try:
                        pq.read_metadata(path)
                        self.reads += 1
                    except FileNotFoundError:
                        continue  # removed between listing and reading
                    except Exception as error:  # noqa: BLE001 - any failure to read is the finding
                        self.problems.append(f"{path}: {error}")
            time.sleep(0.02)


def taskvec(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "taskvec"), *args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="to_upper")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    project = args.project.resolve()
    log_file = project / "logs" / "extract_activations" / args.model / f"{args.task}.log"
    target = f"data/activations/{args.model}/{args.task}/sample0.parquet"

    before = artifact_hashes(project)
    log_file.unlink(missing_ok=True)  # the last run's log says "split seed" too
    watch = PartialFileWatch(project)
    watch.start()
    output_file = project / "logs" / "fault_injection_run.txt"
    output_file.parent.mkdir(parents=True, exist_ok=True)
    with output_file.open("wb") as output:
        run = subprocess.Popen(
            taskvec("run-study", "--", "--forcerun", target),
            cwd=project,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + args.timeout
    killed = False
    while time.monotonic() < deadline and run.poll() is None:
        if log_file.exists() and "split seed" in log_file.read_text(errors="replace"):
            try:
                os.killpg(run.pid, signal.SIGKILL)  # the run, Snakemake and every job it started
                killed = True
            except ProcessLookupError:
                pass
            break
        time.sleep(0.05)
    run.wait()
    if not killed:
        print(
            f"FAIL: the run ended (status {run.returncode}) before its extraction could be killed:\n"
            + output_file.read_text(errors="replace")
        )
        return 1
    while time.monotonic() < deadline:  # until every process of the killed run is gone
        try:
            os.killpg(run.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    print(f"killed the run during {args.model}/{args.task} (a split seed done, the next one extracting)")
    leftover = project / "data" / "results" / args.model / args.task / ".sample0.parquet.killed.tmp"
    leftover.mkdir(parents=True, exist_ok=True)
    (leftover / "sample0.parquet").write_bytes(b"PAR1 half a file")

    rerun = subprocess.run(
        taskvec("run-study"),
        cwd=project,
        capture_output=True,
        text=True,
        timeout=max(60.0, deadline - time.monotonic()),
    )
    watch.stop.set()
    watch.join()
    after = artifact_hashes(project)
    failures = []
    if rerun.returncode != 0:
        failures.append(f"the second run failed:\n{rerun.stdout}\n{rerun.stderr}")
    failures += [f"partial file at an output path: {p}" for p in watch.problems]
    if leftover.exists():
        failures.append(f"the temporary a killed write left is still there: {leftover}")
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    failures += [f"differs from the uninterrupted run: {path}" for path in changed]
    for failure in failures:
        print("FAIL:", failure)
    if not failures:
        print(
            f"OK: the rerun completed; {len(after)} artifacts byte-identical to the uninterrupted run; "
            f"{watch.reads} reads of output files during both runs, none partial"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
