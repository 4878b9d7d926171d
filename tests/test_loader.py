"""The one loader: files found by the model, task and split seed their metadata names, and every
mismatch refused with the files named, so that no reordered command line pairs files wrongly."""

from __future__ import annotations

import pytest

from conftest import run_info
from taskvec.errors import ArtifactError
from taskvec.loader import Sampling, match_runs, task_runs
from taskvec.prompts import Prompt, write_prompts
from taskvec.tasks import get_task
from taskvec.tasks.base import write_task

PROMPT = Prompt("test", 0, (("a", "A"),), "b", ("B",), ("x",))


def _file(tmp_path, name: str, task: str, model: str = "m", seed: int = 0):
    path = tmp_path / f"{name}.parquet"
    write_prompts([PROMPT], run_info(task, model_name=model, seed=seed), path)
    return path


def test_files_given_in_any_order_are_matched_by_their_metadata(tmp_path):
    prompts = [_file(tmp_path, "p_upper", "to_upper"), _file(tmp_path, "p_lower", "to_lower")]
    results = [_file(tmp_path, "r_lower", "to_lower"), _file(tmp_path, "r_upper", "to_upper")]
    runs = match_runs({"prompts": prompts, "results": results})
    assert [run.sampling for run in runs] == [Sampling("m", "to_upper", 0), Sampling("m", "to_lower", 0)]
    assert [(run.prompts.name, run.results.name) for run in runs] == [
        ("p_upper.parquet", "r_upper.parquet"),
        ("p_lower.parquet", "r_lower.parquet"),
    ]


@pytest.mark.parametrize(
    "files, message",
    [
        ({"prompts": ["p0", "p0b"], "results": ["r0"]}, r"two prompts files of to_upper on m, split seed 0: .*p0b"),
        ({"prompts": ["p0", "p1"], "results": ["r0"]}, r"split seed 1 has prompts .*p1.* but no results file"),
        ({"prompts": ["p0"], "results": ["r0", "other_model"]}, r"several models \(m, other\)"),
    ],
    ids=["two-files-of-one-kind", "a-missing-seed", "a-file-of-another-model"],
)
def test_a_mismatch_is_an_error_naming_the_files(tmp_path, files, message):
    made = {
        "p0": _file(tmp_path, "p0", "to_upper"),
        "p0b": _file(tmp_path, "p0b", "to_upper"),
        "p1": _file(tmp_path, "p1", "to_upper", seed=1),
        "r0": _file(tmp_path, "r0", "to_upper"),
        "other_model": _file(tmp_path, "other_model", "to_upper", model="other"),
    }
    with pytest.raises(ArtifactError, match=message):
        match_runs({kind: [made[name] for name in names] for kind, names in files.items()})


def test_several_samplings_of_a_task_are_refused_where_one_is_read(tmp_path):
    seeds = {"prompts": [], "results": []}
    for seed in (0, 1):
        for kind in seeds:
            seeds[kind].append(_file(tmp_path, f"{kind}{seed}", "to_upper", seed=seed))
    assert len(match_runs(seeds)) == 2  # the report reads every sampling
    with pytest.raises(ArtifactError, match=r"several samplings of to_upper on m \(split seeds 0, 1\)"):
        match_runs(seeds, one_sampling_per_task=True)


def test_a_task_without_its_pairs_file_is_refused(tmp_path):
    pairs = tmp_path / "to_lower.parquet"
    write_task(get_task("to_lower"), 0, pairs)
    upper = [_file(tmp_path, f"{kind}_upper", "to_upper") for kind in ("p", "r", "a")]
    with pytest.raises(ArtifactError, match=r"no pairs file of to_upper among .*to_lower.parquet"):
        task_runs([pairs], *([path] for path in upper))
    lower = [_file(tmp_path, f"{kind}_lower", "to_lower") for kind in ("p", "r", "a")]
    runs, model, seeds = task_runs([pairs], *([path] for path in lower))
    assert model == "m" and seeds == {"to_lower": 0} and runs["to_lower"].pairs == pairs
