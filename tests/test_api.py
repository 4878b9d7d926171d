"""One-off use: `taskvec vector` / `taskvec apply` and `taskvec.api`. Mechanics on tiny random models;
the docs' one-off snippet and the commands end to end on the packaged smollm2-135m."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import BIN, ROOT, copy_tree, run_cli, tiny_model
from taskvec import api, methods
from taskvec.errors import ArtifactError, ConfigError, TaskFileError
from taskvec.forward.capture import last_token_states
from taskvec.forward.patched import patched_next_tokens
from taskvec.forward.readout import next_tokens
from taskvec.hooks.intervention import Intervention
from taskvec.prompts import PromptFormat
from taskvec.tasks.base import Pair

PAIRS = [Pair(c, (c.upper(),)) for c in "abcdefghijklmnopqrstuvwx"]  # 24 pairs


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama")


def test_theta_is_the_dummy_queries_state_averaged_over_the_recorded_contexts(lm):
    vector = api.task_vector(lm, PAIRS, layer=1, k=3, contexts=4, dummies=2)
    contexts = vector.metadata["contexts"]
    assert len(contexts) == 4 and all(len(c["demonstrations"]) == 3 and len(c["dummies"]) == 2 for c in contexts)
    fmt = PromptFormat()
    texts = [fmt.render([tuple(d) for d in c["demonstrations"]], x) for c in contexts for x in c["dummies"]]
    expected = last_token_states(lm, texts, batch_size=3).mean(axis=0)
    np.testing.assert_allclose(vector.vectors, expected, atol=1e-5, rtol=1e-5)
    for c in contexts:  # a dummy query is never one of its own demonstrations
        assert not set(c["dummies"]) & {x for x, _ in c["demonstrations"]}
    assert vector.layer == 1 and vector.metadata["layer_choice"] == {"how": "given"}
    np.testing.assert_array_equal(vector.theta, vector.vectors[1])


def test_the_automatic_layer_is_the_best_on_held_out_pairs_that_no_context_uses(lm):
    vector = api.task_vector(lm, PAIRS, k=3, contexts=4)
    choice = vector.metadata["layer_choice"]
    held_out = choice["held_out"]
    assert choice["how"] == "auto" and len(held_out) == max(4, len(PAIRS) // 4) == 6
    used = {x for c in vector.metadata["contexts"] for x in (*(d[0] for d in c["demonstrations"]), *c["dummies"])}
    assert not used & set(held_out)
    accuracy = choice["accuracy_by_layer"]
    assert vector.layer == int(np.argmax(accuracy))  # the first of the best
    # the recorded accuracy at the chosen block is what patching theta there gives
    queries = [f"example:{x}->" for x in held_out]
    tokens = patched_next_tokens(lm, queries, Intervention(vector.layer, vector.theta))
    right = [lm.tokenizer.decode([t]).strip() == x.upper() for t, x in zip(tokens, held_out)]
    assert accuracy[vector.layer] == pytest.approx(np.mean(right))


def test_the_same_pairs_and_seed_give_the_same_vector_and_another_seed_other_contexts(lm):
    one, two = (api.task_vector(lm, PAIRS, k=3, contexts=2) for _ in range(2))
    np.testing.assert_array_equal(one.vectors, two.vectors)
    assert one.metadata == two.metadata
    other = api.task_vector(lm, PAIRS, k=3, contexts=2, seed=1)
    assert other.metadata["contexts"] != one.metadata["contexts"]


def test_a_vector_file_keeps_the_vectors_layer_and_metadata(lm, tmp_path):
    vector = api.task_vector(lm, PAIRS, k=3, contexts=2)
    path = vector.save(tmp_path / "theta.safetensors")
    loaded = api.TaskVector.load(path)
    np.testing.assert_array_equal(loaded.vectors, vector.vectors)
    assert loaded.layer == vector.layer and loaded.metadata == vector.metadata
    assert loaded.format == PromptFormat()
    assert [p.name for p in tmp_path.iterdir()] == ["theta.safetensors"]  # no temporary left beside it
    again = api.task_vector(lm, PAIRS, k=3, contexts=2).save(tmp_path / "again.safetensors")
    assert again.read_bytes() == path.read_bytes()  # byte-identical from run to run


def test_a_file_that_is_not_a_vector_file_is_refused_clearly(tmp_path):
    from safetensors.numpy import save_file

    with pytest.raises(ArtifactError, match="does not exist"):
        api.TaskVector.load(tmp_path / "missing.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ArtifactError, match="not a task-vector file"):
        api.TaskVector.load(tmp_path / "garbage.safetensors")
    save_file({"weight": np.zeros((2, 2), dtype=np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ArtifactError, match="not a task-vector file"):
        api.TaskVector.load(tmp_path / "other.safetensors")


def test_apply_answers_each_query_bare_and_patched(lm):
    vector = api.task_vector(lm, PAIRS, layer=2, k=3, contexts=2)
    queries = ["y", "z", "ab"]
    predictions = api.apply(lm, vector, queries, batch_size=2)
    texts = [f"example:{q}->" for q in queries]
    bare = next_tokens(lm, texts)
    patched = patched_next_tokens(lm, texts, Intervention(2, vector.theta))
    assert [p.query for p in predictions] == queries
    assert [p.bare_first for p in predictions] == [lm.tokenizer.decode([t]).strip() for t in bare]
    assert [p.patched_first for p in predictions] == [lm.tokenizer.decode([t]).strip() for t in patched]
    assert all(p.patched.startswith(p.patched_first) and "\n" not in p.patched for p in predictions)


def test_a_vector_is_refused_by_another_model_or_width(lm):
    vector = api.task_vector(lm, PAIRS, layer=1, k=3, contexts=1)
    with pytest.raises(ConfigError, match="was made with tiny-random-llama, not with this model"):
        api.apply(tiny_model("qwen2"), vector, ["a"])
    with pytest.raises(ConfigError, match="blocks of width 32.*blocks of width 48"):
        api.apply(tiny_model("llama", hidden_size=48), vector, ["a"])
    with pytest.raises(ConfigError, match="no queries"):
        api.apply(lm, vector, [])


def test_bad_settings_stop_before_any_forward_pass(lm, monkeypatch):
    import taskvec.extract

    def no_pass(*args, **kwargs):
        raise AssertionError("a forward pass ran")

    monkeypatch.setattr(taskvec.extract, "shared_prefix_states", no_pass)
    with pytest.raises(ConfigError, match=r"layer 4 is out of range: this model has blocks 0 to 3"):
        api.task_vector(lm, PAIRS, layer=4)
    with pytest.raises(ConfigError, match="layer -1 is out of range"):
        api.task_vector(lm, PAIRS, layer=-1)
    with pytest.raises(ConfigError, match="4 are held out to choose the layer and a context needs 8 more"):
        api.task_vector(lm, PAIRS[:10], k=6)
    with pytest.raises(ConfigError, match="a context needs 8 distinct ones"):
        api.task_vector(lm, PAIRS[:7], layer=1, k=6)
    with pytest.raises(ConfigError, match="unknown scoring rule"):
        api.task_vector(lm, PAIRS, scoring="fuzzy")


def test_pairs_are_read_like_a_task_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"input": "hot", "output": "cold"}\n\n{"input": "big", "output": ["small", "little"]}\n')
    assert api.read_pairs(path) == [Pair("hot", ("cold",)), Pair("big", ("small", "little"))]
    path.write_text('{"input": "hot", "output": "cold"}\n{"input": "big"}\n')
    with pytest.raises(TaskFileError, match=r"pairs.jsonl:2: missing 'output'"):
        api.read_pairs(path)
    with pytest.raises(TaskFileError, match="not found"):
        api.read_pairs(tmp_path / "none.jsonl")


def test_a_model_that_is_no_directory_packaged_name_or_hub_id_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="neither a model directory"):
        api.load(str(tmp_path / "no-such-model"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ArtifactError, match="neither a model directory"):
        api.load(str(tmp_path / "file.txt"))


def _readme_snippet() -> str:
    text = (ROOT / "docs" / "one-off.md").read_text()
    match = re.search(r"<!-- one-off python -->\n```python\n(.*?)```", text, re.S)
    assert match, "the docs' one-off Python snippet is marked <!-- one-off python -->"
    return match.group(1)


@pytest.fixture
def packaged_cache(smollm2_dir, tmp_path):
    """$TASKVEC_CACHE holding the session's conversion of packaged:smollm2-135m where `api.load`
    converts it on first use (the conversion itself is tested with `taskvec convert-model`)."""
    cache = tmp_path / "cache"
    copy_tree(smollm2_dir, cache / "models" / "packaged--smollm2-135m")
    return cache


@pytest.mark.model
def test_the_readme_snippet_runs_and_its_vector_turns_bare_queries_into_antonyms(packaged_cache, tmp_path):
    work = tmp_path / "work"
    (work / "examples" / "pairs").mkdir(parents=True)
    (work / "examples" / "pairs" / "antonyms.jsonl").write_text((ROOT / "examples/pairs/antonyms.jsonl").read_text())
    env = {**os.environ, "TASKVEC_CACHE": str(packaged_cache), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _readme_snippet()], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("good: bare ") and lines[1].startswith("young: bare ")
    assert lines[1].endswith("with the task vector 'old'")  # young -> old (the bare query does not say it)
    assert not lines[1].startswith("young: bare 'old'")
    assert not (work / ".taskvec").exists() and sorted(p.name for p in work.iterdir()) == ["examples"]


@pytest.mark.model
def test_the_commands_make_and_apply_a_vector_and_refuse_bad_inputs_writing_nothing(smollm2_dir, tmp_path):
    demos = ROOT / "examples/pairs/antonyms.jsonl"
    out = tmp_path / "theta.safetensors"
    made = run_cli("vector", "--model", str(smollm2_dir), "--demos", str(demos), "--out", str(out), "--no-progress")
    assert re.search(r"theta after block \d+ \(auto\) of 30, from 20 pairs", made.stdout)
    assert re.search(r"held-out queries \(5\): task vector \d+%, ICL \d+%, bare query \d+%", made.stdout)
    assert "no block works" not in made.stderr
    vector = api.TaskVector.load(out)
    metadata = vector.metadata
    assert metadata["model"]["source"] == "packaged:smollm2-135m" and len(metadata["layer_choice"]["held_out"]) == 5
    assert vector.works and metadata["layer_choice"]["icl_accuracy"] > metadata["layer_choice"]["bare_accuracy"]
    applied = run_cli("apply", "--model", str(smollm2_dir), "--vector", str(out), "--query", "young", "--no-progress")
    rows = {line.split()[0]: line.split() for line in applied.stdout.splitlines() if not line.startswith("#")}
    assert rows["young"][2] == "old"  # the TV's first token

    for args, message in (
        (["--demos", str(tmp_path / "none.jsonl")], "task file not found"),
        (["--demos", str(demos), "--layer", "30"], "layer 30 is out of range: this model has blocks 0 to 29"),
        (["--demos", str(demos), "--k", "14"], "20 pairs: 5 are held out"),
    ):
        bad = tmp_path / "bad.safetensors"
        result = run_cli("vector", "--model", str(smollm2_dir), *args, "--out", str(bad), check=False)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert not bad.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theta.safetensors"]

    other = api.TaskVector.load(out)
    foreign = api.TaskVector(
        np.zeros((4, 32), np.float32), 1, {**other.metadata, "model": {**other.metadata["model"], "n_layers": 4}}
    )
    foreign.save(tmp_path / "foreign.safetensors")
    result = run_cli(
        "apply", "--model", str(smollm2_dir), "--vector", str(tmp_path / "foreign.safetensors"), "--query", "a",
        check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert (
        "foreign.safetensors was made with packaged:smollm2-135m (4 blocks of width 576); this model, "
        "packaged:smollm2-135m, has 30 blocks of width 576" in result.stderr
    )
    missing = run_cli(
        "apply", "--model", str(smollm2_dir), "--vector", str(tmp_path / "none.st"), "--query", "a", check=False
    )
    assert missing.returncode == 1 and "vector file" in missing.stderr and "does not exist" in missing.stderr


@pytest.mark.model
def test_a_vector_no_block_of_which_beats_the_bare_query_says_so_in_its_output_and_file(smollm2_dir, tmp_path):
    # SmolLM2-135M names these capitals by ICL in the arrow format, but no block's theta makes it do so
    out = tmp_path / "capitals.safetensors"
    demos = ROOT / "examples/pairs/country_capital.jsonl"
    made = run_cli(
        "vector", "--model", str(smollm2_dir), "--demos", str(demos), "--out", str(out), "--no-progress",
        "--demonstration-template", "{x} -> {y}", "--query-template", "{x} ->",
    )  # fmt: skip
    assert "WARNING" in made.stderr and "no block works" in made.stderr, made.stderr
    assert "so the model can do the task from demonstrations but no single block's theta carries it" in made.stderr
    vector = api.TaskVector.load(out)
    choice = vector.metadata["layer_choice"]
    assert vector.works is False and max(choice["accuracy_by_layer"]) <= choice["bare_accuracy"]
    assert vector.metadata["format"]["query"] == "{x} ->"
    given = api.task_vector(api.load(smollm2_dir), api.read_pairs(demos), layer=3)
    assert given.works is None  # nothing held out: nothing to tell
    neither = {**choice, "icl_accuracy": 0.0, "bare_accuracy": 0.0, "accuracy_by_layer": [0.0] * 30}
    assert "the model does not do this task from its demonstrations either" in api.no_block_works(neither)


@pytest.mark.model
def test_the_commands_make_and_apply_a_mean_difference_vector_as_they_do_theta(smollm2_dir, tmp_path):
    demos = ROOT / "examples/pairs/antonyms.jsonl"
    out = tmp_path / "md.safetensors"
    args = ("--model", str(smollm2_dir), "--demos", str(demos), "--out", str(out), "--no-progress")
    made = run_cli("vector", *args, "--method", "mean_difference", "--layer", "18", "--strength", "2")
    assert "md.safetensors: mean_difference (strength 2) after block 18 (given) of 30, from 20 pairs" in made.stdout
    vector = api.TaskVector.load(out)
    assert (vector.method.name, vector.strength, vector.layer) == ("mean_difference", 2.0, 18)
    applied = run_cli("apply", "--model", str(smollm2_dir), "--vector", str(out), "--query", "young", "--no-progress")
    assert "# mean_difference x 2 is added to the residual stream after block 18" in applied.stdout
    [row] = [line.split() for line in applied.stdout.splitlines() if line.startswith("young")]
    [expected] = api.apply(api.load(smollm2_dir), vector, ["young"])
    assert row[1:3] == [expected.bare_first, expected.patched_first]
    for extra, status, message in (
        (["--strength", "2"], 1, "only a method that adds or turns takes a strength"),
        (["--method", "icv"], 2, "invalid choice: 'icv'"),
    ):
        bad = run_cli("vector", *args[:-3], "--out", str(tmp_path / "bad.safetensors"), *extra, check=False)
        assert bad.returncode == status and message in bad.stderr, bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md.safetensors"]


def test_the_commands_explain_themselves():
    for command in ("vector", "apply"):
        result = subprocess.run([str(BIN / "taskvec"), command, "--help"], capture_output=True, text=True, check=True)
        assert "--model" in result.stdout and "packaged" in result.stdout
    listed = subprocess.run([str(BIN / "taskvec"), "vector", "--help"], capture_output=True, text=True, check=True)
    words = " ".join(listed.stdout.split())
    assert "{" + ",".join(methods.names()) + "}" in listed.stdout
    # every registered method explained by its own summary
    assert all(f"{name} ({' '.join(methods.get(name).summary.split())}" in words for name in methods.names())
    assert "mean_difference (the mean stream" in words and "(the in-context vector (Liu et al. 2024)" in words


def test_a_hub_id_or_packaged_name_is_converted_into_the_cache_under_a_name_of_its_own(tmp_path, monkeypatch):
    import taskvec.models

    calls = []

    def convert(source, out):
        calls.append((source, out))
        raise RuntimeError("no network in this test")

    monkeypatch.setattr(taskvec.models, "convert_model", convert)
    monkeypatch.setenv("TASKVEC_CACHE", str(tmp_path))
    for source, name in (("HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB--SmolLM2-135M"), ("gpt2", "gpt2")):
        with pytest.raises(RuntimeError, match="no network"):
            api.load(source)
        assert calls[-1] == (source, tmp_path / "models" / name)


@pytest.mark.model
def test_the_packaged_model_is_converted_once_then_loaded_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKVEC_CACHE", str(tmp_path))
    lm = api.load("packaged:smollm2-135m", threads=1)
    target = tmp_path / "models" / "packaged--smollm2-135m"
    assert lm.provenance["source"] == "packaged:smollm2-135m" and (target / "model.safetensors").is_file()
    written = (target / "model.safetensors").stat().st_mtime_ns
    again = api.load("packaged:smollm2-135m", threads=1)
    assert (target / "model.safetensors").stat().st_mtime_ns == written  # not converted again
    assert api.model_identity(again) == api.model_identity(lm)
