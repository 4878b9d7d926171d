"""Residual-stream capture and patching on tiny random models of every supported architecture.

These check mechanics (positions, layers, padding), which random weights exercise as well as real
ones; claims about task vectors are tested on the real model elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_model
from taskvec import forward
from taskvec.architectures import describe
from taskvec.forward import (
    encode,
    last_token_states,
    next_tokens,
    next_tokens_from_states,
    patched_sweep,
    patched_sweep_naive,
    shared_prefix_states,
)
from taskvec.hooks import capture_last_token, replace_last_token

TEXTS = ["example:a->b\nexample:c->", "example:[a,b,c]->", "example:qq->", "x"]


def test_capture_equals_output_hidden_states(tiny_lm):
    arch = describe(tiny_lm.model)
    batch = encode(tiny_lm, TEXTS)
    with torch.inference_mode():
        with capture_last_token(arch.layers) as states:
            out = tiny_lm.model(**batch.inputs(), output_hidden_states=True)
        hidden = out.hidden_states
        for layer in range(arch.n_layers - 1):
            torch.testing.assert_close(states[layer], hidden[layer + 1][:, -1])
        # transformers applies the final norm to its last hidden state; the block output is before it.
        normed = arch.final_norm(states[-1])
        torch.testing.assert_close(normed, hidden[-1][:, -1])
        torch.testing.assert_close(arch.unembedding(normed), out.logits[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", [0, 2])
def test_patch_changes_only_last_position_from_its_layer_on(tiny_lm, layer):
    arch = describe(tiny_lm.model)
    batch = encode(tiny_lm, TEXTS[:3])
    theta = torch.randn(3, tiny_lm.model.config.hidden_size) * 5
    with torch.inference_mode():
        clean = tiny_lm.model(**batch.inputs(), output_hidden_states=True).hidden_states
        with replace_last_token(arch.layers, torch.full((3,), layer), theta):
            patched = tiny_lm.model(**batch.inputs(), output_hidden_states=True).hidden_states
    # hidden_states[i + 1] is block i's output
    for block in range(arch.n_layers - 1):
        after, before = patched[block + 1], clean[block + 1]
        torch.testing.assert_close(after[:, :-1], before[:, :-1])
        if block < layer:
            torch.testing.assert_close(after[:, -1], before[:, -1])
        elif block == layer:
            torch.testing.assert_close(after[:, -1], theta)
        else:
            assert not torch.allclose(after[:, -1], before[:, -1])


def test_hooks_are_removed_even_on_error(tiny_lm):
    arch = describe(tiny_lm.model)
    with pytest.raises(RuntimeError, match="boom"):
        with capture_last_token(arch.layers), replace_last_token(arch.layers, torch.tensor([0]), torch.zeros(1, 32)):
            raise RuntimeError("boom")
    assert all(not layer._forward_hooks for layer in arch.layers)


def test_left_padded_batch_matches_one_prompt_at_a_time(tiny_lm):
    together = last_token_states(tiny_lm, TEXTS, batch_size=len(TEXTS))
    alone = np.stack([last_token_states(tiny_lm, [text], batch_size=1)[0] for text in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-4, rtol=1e-4)
    assert np.array_equal(next_tokens(tiny_lm, TEXTS, batch_size=4), next_tokens(tiny_lm, TEXTS, batch_size=1))


@pytest.mark.parametrize("rows_per_pass", [256, 5, 1], ids=["all-layers-one-pass", "chunks", "layer-by-layer"])
def test_fast_sweep_matches_naive_patched_forwards(tiny_lm, rows_per_pass, monkeypatch):
    monkeypatch.setattr(forward, "SWEEP_ROWS_PER_PASS", rows_per_pass)
    queries = TEXTS[:3]
    rng = np.random.default_rng(0)
    n_layers = describe(tiny_lm.model).n_layers
    vectors = rng.normal(scale=3.0, size=(3, n_layers, tiny_lm.model.config.hidden_size)).astype(np.float32)
    fast = patched_sweep(tiny_lm, queries, vectors, batch_size=2)
    naive = patched_sweep_naive(tiny_lm, queries, vectors, batch_size=3)
    assert fast.shape == (3, n_layers)
    assert np.array_equal(fast, naive)
    one_by_one = np.concatenate([patched_sweep(tiny_lm, [q], vectors[i:i + 1], batch_size=1)
                                 for i, q in enumerate(queries)])
    assert np.array_equal(fast, one_by_one)


def test_sweep_with_the_clean_state_reproduces_the_unpatched_prediction(tiny_lm):
    """Patching a prompt's own block output back in is a no-op at every layer."""
    states = last_token_states(tiny_lm, TEXTS[:3])
    sweep = patched_sweep(tiny_lm, TEXTS[:3], states)
    plain = next_tokens(tiny_lm, TEXTS[:3])
    assert np.array_equal(sweep, np.repeat(plain[:, None], sweep.shape[1], axis=1))


GROUPS = [
    ["example:a->b\nexample:c->", "example:a->b\nexample:dd->"],
    ["example:[a,b,c]->a\nexample:[x,y,z]->x\nexample:q->", "example:[a,b,c]->a\nexample:[x,y,z]->x\nexample:r->"],
    ["p", "q"],
]


@pytest.mark.parametrize("pass_overhead", [0, 64], ids=["suffix-pass-per-length", "one-suffix-pass"])
def test_shared_prefix_states_equal_running_each_text_alone(tiny_lm, pass_overhead, monkeypatch):
    """Suffixes run in passes of similar length (each with its rows of the prefix cache); with no cost
    per pass every distinct length gets its own pass."""
    monkeypatch.setattr(forward, "PASS_OVERHEAD_TOKENS", pass_overhead)
    shared = shared_prefix_states(tiny_lm, GROUPS, batch_size=2)
    alone = np.stack([last_token_states(tiny_lm, group, batch_size=1) for group in GROUPS])
    np.testing.assert_allclose(shared, alone, atol=1e-4, rtol=1e-4)


def test_shared_prefix_states_within_a_sliding_window(monkeypatch):
    """Gemma 3 interleaves sliding-window layers; prompts shorter than the window share the prefix."""
    lm = tiny_model("gemma3_text", sliding_window=128)
    monkeypatch.setattr(forward, "PASS_OVERHEAD_TOKENS", 0)
    shared = shared_prefix_states(lm, GROUPS, batch_size=3)
    alone = np.stack([last_token_states(lm, group, batch_size=1) for group in GROUPS])
    np.testing.assert_allclose(shared, alone, atol=1e-4, rtol=1e-4)


def test_icl_prediction_from_the_shared_prefix_equals_a_full_forward(tiny_lm):
    """The study reads ICL predictions off the last suffix of the shared-prefix pass (final norm and
    unembedding applied to the last block's state): they must equal a plain forward of each prompt."""
    states = shared_prefix_states(tiny_lm, GROUPS, batch_size=2)
    from_states = next_tokens_from_states(tiny_lm, states[:, -1, -1])
    assert np.array_equal(from_states, next_tokens(tiny_lm, [group[-1] for group in GROUPS], batch_size=1))


def test_the_benchmarked_workload_floor_counts_no_more_work_than_the_study_does(tmp_path):
    """`taskvec bench` divides the workload's least FLOPs by the machine's best matrix rate and reports
    that as a floor no implementation beats: the count must be a lower bound of the block and
    unembedding work that run_task really does (counted with hooks), and close to it."""
    import dataclasses

    from taskvec.bench import _params, workload_flops
    from taskvec.prompts import PromptFormat, SplitSizes, sample_prompts, write_prompts
    from taskvec.run import run_task
    from taskvec.tasks import get_task

    lm = tiny_model("llama")
    fmt = PromptFormat()
    prompts = sample_prompts(get_task("to_upper").build(0), SplitSizes(k=3, baseline=8, dev=6, test=6), seed=0)
    path = tmp_path / "prompts.parquet"
    write_prompts(prompts, {"task": {"task": "to_upper", "one_token_output": False},
                            "format": dataclasses.asdict(fmt)}, path)
    arch = describe(lm.model)
    counted = {"block_tokens": 0, "readouts": 0}

    def count(key):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            counted[key] += hidden.shape[0] * hidden.shape[1]
        return hook

    handles = [layer.register_forward_pre_hook(count("block_tokens"), with_kwargs=True) for layer in arch.layers]
    handles.append(arch.unembedding.register_forward_pre_hook(count("readouts"), with_kwargs=True))
    try:
        run_task(lm, prompts, fmt, batch_size=4)
    finally:
        for handle in handles:
            handle.remove()
    done = (counted["block_tokens"] * 2 * _params(arch.layers[0])
            + counted["readouts"] * 2 * arch.unembedding.weight.numel())
    least = workload_flops(lm, [path])
    assert least <= done <= 1.25 * least, (least, done)
