"""The one way every analysis and both reports find their input files: by the metadata each file
carries (model, task, split seed), never by path or position on the command line.

:func:`match_runs` groups files of several kinds (prompts, activations, ICL outputs, results) by the
sampling they belong to, and refuses, naming the files, whatever would otherwise pair files silently
wrong: two files of one kind for one sampling, a sampling that lacks a kind, files of several models
where one model's are expected, several samplings of one task where one is expected, a task's pairs
file missing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from taskvec import store
from taskvec.errors import ArtifactError
from taskvec.prompts import RunInfo
from taskvec.tasks.base import read_task_info

PathLike = str | os.PathLike[str]


# The command that makes each kind of file (for the error that names a missing or broken one).
MADE_BY = {
    "prompts": "`taskvec make-prompts` makes it",
    "activations": "`taskvec extract` makes it",
    "icl": "`taskvec extract --icl-out` makes it",
    "results": "`taskvec evaluate` makes it",
}


def run_info(path: PathLike, kind: str = "") -> RunInfo:
    """The metadata of a prompts, activations, ICL or results file, from its footer alone (the data
    is read later, by the step that needs it)."""
    try:
        footer = pq.read_schema(path).empty_table()
    except (OSError, pa.ArrowException):
        store.read_parquet(path, MADE_BY.get(kind, ""))  # raises, naming the file and how to make it again
        raise
    return RunInfo.of_table(footer, path)


@dataclasses.dataclass(frozen=True, order=True)
class Sampling:
    """One model's sampling of one task's splits."""

    model: str
    task: str
    seed: int

    def __str__(self) -> str:
        return f"{self.task} on {self.model}, split seed {self.seed}"


@dataclasses.dataclass(frozen=True)
class Run:
    """One sampling's files, by kind (``files["results"]``), and its task's pairs file, where given."""

    sampling: Sampling
    files: dict[str, Path]
    pairs: Path | None = None

    def __getattr__(self, kind: str) -> Path:
        try:
            return self.__dict__["files"][kind]
        except KeyError:
            raise AttributeError(kind) from None


def _listing(found: Mapping[Sampling, Mapping[str, Path]]) -> str:
    return "; ".join(f"{s}: {', '.join(f'{k} {p}' for k, p in files.items())}" for s, files in found.items())


def match_runs(
    files: Mapping[str, Sequence[PathLike]],
    pairs: Sequence[PathLike] | None = None,
    one_model: bool = True,
    one_sampling_per_task: bool = False,
    optional: Sequence[str] = (),
) -> list[Run]:
    """Each sampling's files of every kind in ``files`` (kind -> paths), in the order of the first
    kind's paths. Every sampling must have one file of each kind (kinds in ``optional`` may be absent
    altogether, or given for some samplings); with ``pairs``, each task's pairs file, found by the task
    it holds. An error names the files whenever something does not match."""
    kinds = list(files)
    found: dict[Sampling, dict[str, Path]] = {}
    for kind in kinds:
        for path in files[kind]:
            info = run_info(path, kind)
            sampling = Sampling(info.model_name, info.task.name, int(info.seed))
            held = found.setdefault(sampling, {})
            if kind in held:
                raise ArtifactError(
                    f"two {kind} files of {sampling}: {held[kind]} and {path}",
                    fix=f"give one {kind} file per sampling",
                )
            held[kind] = Path(path)
    models = sorted({s.model for s in found})
    if one_model and len(models) > 1:
        raise ArtifactError(
            f"the files given belong to several models ({', '.join(models)}): {_listing(found)}",
            fix="give one model's files",
        )
    required = [kind for kind in kinds if kind not in optional]
    for sampling, held in found.items():
        missing = [kind for kind in required if kind not in held]
        if missing:
            raise ArtifactError(
                f"{sampling} has {', '.join(f'{k} {p}' for k, p in held.items())} but no {' or '.join(missing)} "
                f"file; the files given are of {_listing(found)}",
                fix=f"give the {' and '.join(missing)} file of every sampling whose other files are given",
            )
    if one_sampling_per_task:
        by_task: dict[tuple[str, str], list[Sampling]] = {}
        for sampling in found:
            by_task.setdefault((sampling.model, sampling.task), []).append(sampling)
        several = {key: s for key, s in by_task.items() if len(s) > 1}
        if several:
            (model, task), samplings = next(iter(several.items()))
            seeds = ", ".join(str(s.seed) for s in samplings)
            raise ArtifactError(
                f"files of several samplings of {task} on {model} (split seeds {seeds}) were given where one is read: "
                + _listing({s: found[s] for s in samplings}),
                fix="give the files of one sampling per task (the study gives its first split seed's)",
            )
    task_pairs: dict[str, Path] = {}
    if pairs is not None:
        for path in pairs:
            name = read_task_info(path).name
            if name in task_pairs:
                raise ArtifactError(
                    f"two pairs files of {name}: {task_pairs[name]} and {path}", fix="give one per task"
                )
            task_pairs[name] = Path(path)
        lacking = sorted({s.task for s in found} - set(task_pairs))
        if lacking:
            raise ArtifactError(
                f"no pairs file of {', '.join(lacking)} among {', '.join(map(str, pairs)) or 'none'}",
                fix="give the pairs file (data/tasks/{task}.parquet) of every task whose other files are given",
            )
    return [Run(sampling, held, task_pairs.get(sampling.task)) for sampling, held in found.items()]


def task_runs(
    pairs: Sequence[PathLike],
    prompts: Sequence[PathLike],
    results: Sequence[PathLike],
    activations: Sequence[PathLike] | None = None,
) -> tuple[dict[str, Run], str, dict[str, int]]:
    """One model's files of one sampling per task (what the analyses read): each task's run, the
    model's name and each task's split seed. ``activations`` only where the analysis reads theta."""
    kinds = {"prompts": prompts, "results": results}
    if activations is not None:
        kinds["activations"] = activations
    runs = match_runs(kinds, pairs=pairs, one_sampling_per_task=True)
    if not runs:
        raise ArtifactError(f"no {' or '.join(kinds)} files were given", fix="give each task's files")
    return (
        {run.sampling.task: run for run in runs},
        runs[0].sampling.model,
        {run.sampling.task: run.sampling.seed for run in runs},
    )
