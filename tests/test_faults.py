"""Faults inside one process: accelerator out of memory, a seed failing after others succeeded,
corrupted model files, models that cannot be used, a tokenizer without a pad token."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import char_tokenizer, run_cli, run_info, tiny_model
from taskvec import store
from taskvec.architectures import describe
from taskvec.compute import Compute
from taskvec.forward.batching import with_batch_backoff
from taskvec.forward.readout import next_tokens
from taskvec.jobs import evaluation, extraction
from taskvec.models import LoadedModel, check_weights, load_model
from taskvec.prompts import PromptFormat, SplitSizes, sample_prompts
from taskvec.tasks import get_task

FMT = PromptFormat()

RULES = {"one_token": False, "leading_space": "off", "scoring": "exact"}


def _prompts(seed: int = 0):
    return sample_prompts(get_task("next_letter").build(0), SplitSizes(k=3, baseline=4, dev=5, test=5), seed)


def test_out_of_memory_halves_the_batch_and_says_which_setting(caplog):
    sizes = []

    def attempt(size):
        sizes.append(size)
        if size > 8:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return size

    with caplog.at_level(logging.WARNING, logger="taskvec.forward"):
        assert with_batch_backoff(attempt, 64, "a test") == (8, 8)
    assert sizes == [64, 32, 16, 8]
    assert len(caplog.records) == 3 and "compute.batch_size" in caplog.records[0].getMessage()


def test_library_allocation_failures_count_as_out_of_memory_and_other_errors_do_not():
    sizes = []

    def attempt(size):
        sizes.append(size)
        if size > 2:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        with_batch_backoff(attempt, 8, "a test")
    assert sizes == [8, 4, 2]


def test_out_of_memory_at_batch_size_one_stops_with_what_to_change():
    def attempt(size):
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(MemoryError, match=r"even at batch size 1") as raised:
        with_batch_backoff(attempt, 4, "a test")
    assert "bfloat16" in raised.value.fix and "--device cpu" in raised.value.fix
    assert raised.value.study_fix == "compute.dtype and compute.device in params.yaml"


def test_a_task_that_runs_out_of_memory_gives_the_results_of_the_smaller_batch(monkeypatch):
    lm = tiny_model("llama")
    prompts = _prompts()
    expected_vectors, expected = evaluation.run_task(lm, prompts, FMT, batch_size=2)[1:]
    real = extraction.task_vectors_and_icl
    tried = []

    def short_of_memory(lm, prompts, fmt, batch_size, **kwargs):
        tried.append(batch_size)
        if batch_size > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(lm, prompts, fmt, batch_size, **kwargs)

    monkeypatch.setattr(extraction, "task_vectors_and_icl", short_of_memory)
    _, vectors, table = evaluation.run_task(lm, prompts, FMT, batch_size=16)
    assert tried == [16, 8, 4, 2]
    assert table.equals(expected)
    np.testing.assert_array_equal(vectors, expected_vectors)


def _layer_hooks(lm) -> list:
    return [len(layer._forward_hooks) + len(layer._forward_pre_hooks) for layer in describe(lm.model).layers]


@pytest.mark.parametrize("fail_at", [0.02, 0.5, 0.98], ids=["extraction", "middle", "sweep-end"])
def test_out_of_memory_in_the_middle_of_a_pass_leaves_no_hook_and_changes_no_result(fail_at):
    """The failure is raised from inside a decoder block, while capture or patch hooks are active and
    blocks are skipped, at a point a fraction ``fail_at`` of the way through the task's passes."""
    lm = tiny_model("llama")
    prompts = _prompts()
    layers = list(describe(lm.model).layers)
    calls = []
    probe = layers[1].register_forward_hook(lambda *args: calls.append(1))
    evaluation.run_task(lm, prompts, FMT, batch_size=8)
    probe.remove()
    _, expected_vectors, expected = evaluation.run_task(lm, prompts, FMT, batch_size=4)
    clean = _layer_hooks(lm)
    target, seen = int(len(calls) * fail_at), []

    def fail_once(module, args, output):
        seen.append(1)
        if len(seen) == target + 1:
            raise torch.OutOfMemoryError("CUDA out of memory")

    injected = layers[1].register_forward_hook(fail_once)
    try:
        _, vectors, table = evaluation.run_task(lm, prompts, FMT, batch_size=8)
    finally:
        injected.remove()
    assert len(seen) > target + 1  # it failed, and the task started again
    assert _layer_hooks(lm) == clean and list(describe(lm.model).layers) == layers
    assert table.equals(expected)
    np.testing.assert_array_equal(vectors, expected_vectors)


def test_extraction_job_writes_nothing_when_a_later_seed_fails(tmp_path, monkeypatch):
    lm = tiny_model("llama")
    calls = []

    def fake_build(task_file, tokenizer, fmt, sizes, seed, model_name):
        calls.append(seed)
        if seed == 1:
            raise ValueError("seed 1 cannot be sampled")
        return _prompts(seed), run_info("next_letter", RULES, model_name, seed)

    monkeypatch.setattr(Compute, "load", lambda self, model_dir: lm)
    monkeypatch.setattr(extraction, "build_prompts", fake_build)
    outs = {
        kind: [tmp_path / kind / f"sample{i}.parquet" for i in range(2)] for kind in ("prompts", "activations", "icl")
    }
    with pytest.raises(ValueError, match="seed 1"):
        extraction.extract_task_file(
            "t.parquet", "m", "tiny", FMT, SplitSizes(), [0, 1], outs["prompts"], outs["activations"], outs["icl"]
        )
    assert calls == [0, 1]
    assert not any(path.exists() for paths in outs.values() for path in paths)


def test_evaluation_job_writes_nothing_when_a_later_seed_fails(tmp_path, monkeypatch):
    lm = tiny_model("llama")
    monkeypatch.setattr(Compute, "load", lambda self, model_dir: lm)
    monkeypatch.setattr(
        extraction,
        "build_prompts",
        lambda task_file, tok, fmt, sizes, seed, name: (_prompts(seed), run_info("next_letter", RULES, name, seed)),
    )
    files = {
        kind: [tmp_path / kind / f"sample{i}.parquet" for i in range(2)] for kind in ("prompts", "activations", "icl")
    }
    extraction.extract_task_file(
        "t.parquet", "m", "tiny", FMT, SplitSizes(), [0, 1], files["prompts"], files["activations"], files["icl"]
    )
    real, seen = evaluation.evaluate_prompts, []

    def fail_on_second(*args, **kwargs):
        seen.append(1)
        if len(seen) == 2:
            raise ValueError("the second seed fails")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_prompts", fail_on_second)
    results = [tmp_path / "results" / f"sample{i}.parquet" for i in range(2)]
    with pytest.raises(ValueError, match="second seed"):
        evaluation.evaluate_files("m", files["prompts"], files["activations"], files["icl"], results)
    assert not any(path.exists() for path in results)


def _save_tiny(tmp_path):
    lm = tiny_model("llama")
    lm.model.save_pretrained(tmp_path / "model", safe_serialization=True)
    lm.tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_a_truncated_model_file_is_named_with_the_command_that_rebuilds_it(tmp_path):
    model_dir = _save_tiny(tmp_path)
    check_weights(model_dir)  # whole: no error
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(
        store.ArtifactError, match=r"(?s)model.safetensors is truncated or corrupted.*to fix: delete .*convert-model"
    ):
        load_model(model_dir, device="cpu")


def test_a_model_file_with_a_garbled_header_is_named(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(4)}, str(path))
    data = bytearray(path.read_bytes())
    data[8:12] = b"\xff\xfe\x00{"
    path.write_bytes(bytes(data))
    with pytest.raises(store.ArtifactError, match="model.safetensors is truncated or corrupted"):
        check_weights(tmp_path)


def test_a_sharded_model_missing_a_shard_is_named(tmp_path):
    lm = tiny_model("llama")
    model_dir = tmp_path / "model"
    lm.model.save_pretrained(model_dir, safe_serialization=True, max_shard_size="20KB")
    lm.tokenizer.save_pretrained(model_dir)
    shards = sorted(model_dir.glob("model-*.safetensors"))
    assert len(shards) > 1 and (model_dir / "model.safetensors.index.json").exists()
    check_weights(model_dir)  # whole: no error
    shards[-1].unlink()
    with pytest.raises(store.ArtifactError, match=rf"lacks {shards[-1].name}, named by model.safetensors.index.json"):
        load_model(model_dir, device="cpu")


def test_a_missing_model_directory_says_how_to_make_it(tmp_path):
    with pytest.raises(store.ArtifactError, match=r"missing does not exist; build it with `taskvec convert-model`"):
        load_model(tmp_path / "missing", device="cpu")


def test_converting_a_model_that_is_not_a_causal_lm_fails_and_writes_nothing(tmp_path):
    from transformers import ViTConfig, ViTModel

    source = tmp_path / "vit"
    ViTModel(
        ViTConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=8, patch_size=4
        )
    ).save_pretrained(source, safe_serialization=True)
    result = run_cli("convert-model", str(source), "--out", str(tmp_path / "out"), check=False)
    assert result.returncode == 1
    assert "(model type 'vit') is not a causal language model" in result.stderr
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_a_tokenizer_without_a_pad_token_still_batches_correctly():
    tokenizer = char_tokenizer()
    tokenizer.pad_token = None
    lm = tiny_model("llama")
    lm = LoadedModel(lm.model, tokenizer, lm.device, lm.provenance)
    assert tokenizer.pad_token_id is None and isinstance(lm.pad_token_id, int)  # any id: padding is masked
    texts = ["example:a->b\nexample:c->", "x", "example:qq->"]
    assert np.array_equal(next_tokens(lm, texts, batch_size=3), next_tokens(lm, texts, batch_size=1))


def test_gpu_benchmark_figures_are_recorded_with_the_device_named():
    """reports/benchmarks_gpu.json is written by `taskvec bench-random` on a GPU machine; the
    Markdown beside it must show what it holds."""
    from pathlib import Path

    reports = Path(__file__).resolve().parents[1] / "reports"
    gpu = json.loads((reports / "benchmarks_gpu.json").read_text())
    entry = gpu["models"]["random llama-7b"]
    assert gpu["machine"]["cuda"] and entry["dtype"] == "bfloat16" and entry["device"].startswith("cuda")
    assert entry["parameters"] > 6e9 and entry["oom_backoff"]["completed"] and entry["oom_backoff"]["same_results"]
    text = (reports / "benchmarks.md").read_text()
    assert gpu["machine"]["cuda"] in text and f"| {entry['sweep_ratio']:.2f} |" in text


def test_cpu_benchmark_figures_include_the_workload_floor_and_the_other_dtype():
    """reports/benchmarks.json is written by `taskvec bench` after the study; its workload sits above
    its compute floor (a floor below the measured time would be a wrong count), the bfloat16 run is
    compared with float32's predictions, implicit ICL's calibration step sits above its read floor,
    and the Markdown shows the figures."""
    from pathlib import Path

    reports = Path(__file__).resolve().parents[1] / "reports"
    figures = json.loads((reports / "benchmarks.json").read_text())["models"]
    text = (reports / "benchmarks.md").read_text()
    assert set(figures) == {"smollm2-135m", "gemma3-270m"}
    for name, entry in figures.items():
        workload = entry["workload"]
        assert workload["tasks"] == 18 and workload["dtype"] == "float32" and workload["over_floor"] > 1
        other = workload["alternative_dtype"]
        assert other["dtype"] == "bfloat16" and other["over_floor"] > 1 and 0 < other["same_predictions"] < 1
        assert entry["naive_speedup_at_limit"] > 1
        assert f"| {name} | float32 | {workload['seconds']:.1f} |" in text
        assert f"| {name} | bfloat16 | {other['seconds']:.1f} |" in text
        step = entry["calibration"]  # implicit ICL's training step, above the time reading its weights takes
        assert step["threads"] == 1 and step["over_floor"] > 1 and step["floor_seconds"] > 0
        assert f"| {name} | 1 | 2 | {step['forward_seconds']:.3f} |" in text
