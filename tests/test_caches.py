"""Caches shared between people and clones on one server, with the engines' own mechanisms: DVC's
shared cache directory (two clones, one copy of every artifact on disk) and Snakemake's
between-workflow output cache (a second, unrelated study reuses the converted model and the task
files). Each prints the time it took, against the cold run, for the closing note of a change."""

from __future__ import annotations

import hashlib
import time

import pytest

from conftest import TINY_PARAMS, _dvc, _env, _git, _versioned_copy, make_project, planned_jobs, snakemake

pytestmark = pytest.mark.workflow


def test_two_clones_share_one_dvc_cache_and_link_the_files_instead_of_copying(study, tmp_path):
    first, second, cache = tmp_path / "first", tmp_path / "second", tmp_path / "shared-cache"
    _versioned_copy(study, first)
    # What a team on one server sets once (README, "Scaling out"); the settings travel with git.
    _dvc(first, "cache", "dir", str(cache))
    _dvc(first, "config", "cache.shared", "group")
    _dvc(first, "config", "cache.type", "reflink,hardlink,symlink")
    _dvc(first, "repro", "study")  # the default study (the extended stage is tested on its own)
    _git(first, "add", "-A")
    _git(first, "commit", "-q", "-m", "study")

    _git(tmp_path, "clone", "-q", str(first), str(second))
    start = time.perf_counter()
    _dvc(second, "checkout", "study")
    snakemake(second, "--touch", "--quiet")  # as `make pull` does after fetching
    seconds = time.perf_counter() - start
    print(f"\nsecond clone, from the shared DVC cache: {seconds:.1f} s (checkout and touch; nothing recomputed)")
    assert "up to date" in _dvc(second, "status", "study").stdout
    assert planned_jobs(second) == []
    parquet = sorted((first / "data").rglob("*.parquet"))
    assert len(parquet) > 20
    for path in parquet:
        twin = second / path.relative_to(first)
        content = twin.read_bytes()
        assert content == path.read_bytes()
        digest = hashlib.md5(content).hexdigest()
        stored = cache / "files" / "md5" / digest[:2] / digest[2:]
        assert twin.stat().st_ino == stored.stat().st_ino  # the cache's file itself, linked: no copy


def test_a_second_study_takes_the_model_and_task_files_from_snakemakes_output_cache(tmp_path):
    cache = tmp_path / "snakemake-cache"
    cache.mkdir()
    env = {**_env(), "SNAKEMAKE_OUTPUT_CACHE": str(cache)}
    targets = ("data/models/smollm2-135m", "data/tasks/to_upper.parquet", "data/tasks/next_letter.parquet")
    other = {**TINY_PARAMS, "sizes": {**TINY_PARAMS["sizes"], "k": 4, "seeds": 1}}  # another study's settings
    times = {}
    for name, params in (("cold", TINY_PARAMS), ("cached", other)):
        (tmp_path / name).mkdir()
        project = make_project(tmp_path / name, params)
        start = time.perf_counter()
        run = snakemake(project, *targets, "--cache", env=env)
        times[name] = time.perf_counter() - start
        log = run.stdout + run.stderr
        # a job that ran wrote its log (a job taken from the cache leaves it empty)
        logs = [project / "logs" / "convert_model" / "smollm2-135m.log"] + [
            project / "logs" / "build_task" / f"{task}.log" for task in ("to_upper", "next_letter")
        ]
        ran = [path.exists() and path.stat().st_size > 0 for path in logs]
        if name == "cold":
            assert "to cache" in log and all(ran)
        else:  # nothing converted or built: every output comes from the cache
            assert log.count("from cache.") >= len(targets) and not any(ran), log[-3000:]
        assert (project / "data" / "models" / "smollm2-135m" / "config.json").is_file()
    print(f"\nconvert and build: cold {times['cold']:.1f} s, from Snakemake's output cache {times['cached']:.1f} s")
    assert times["cached"] < times["cold"]
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == len(targets)  # one entry per output; the second study stored nothing new
