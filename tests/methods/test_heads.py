"""Attention heads at the last token (the function-vector method): capture, patching, the cached
scan against full recomputation, and head outputs in residual-stream space, on tiny random models of
every supported architecture."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from taskvec.architectures import describe
from taskvec.forward.batching import encode
from taskvec.hooks.intervention import Intervention, intervene
from taskvec.methods.heads import (
    attention_heads,
    capture_head_outputs,
    head_attribution,
    head_patch_scan,
    head_patch_scan_naive,
    head_vectors,
    mean_head_outputs,
)

TEXTS = ["example:a->b\nexample:c->", "example:[a,b,c]->", "example:qq->r\nexample:s->", "x"]


def test_heads_split_the_projection_input(tiny_lm):
    heads = attention_heads(tiny_lm)
    config = tiny_lm.model.config
    assert heads.n_layers == describe(tiny_lm.model).n_layers
    assert heads.n_heads == (getattr(config, "num_attention_heads", None) or config.n_head)
    assert heads.n_heads * heads.head_dim in (config.hidden_size, heads.n_heads * (getattr(config, "head_dim", 0) or 0))


def test_head_vectors_sum_to_what_the_attention_adds_to_the_residual_stream(tiny_lm):
    """Each head's output in residual-stream space, that head alone: the heads of a layer add up, with
    the projection's bias, to what the attention adds to the stream at the last token (the projection's
    output, or, for Gemma 2 and 3, that output after the norm it passes through)."""
    heads = attention_heads(tiny_lm)
    batch = encode(tiny_lm, TEXTS)
    written: list[torch.Tensor] = [None] * heads.n_layers
    adds = heads.norms if heads.norms is not None else heads.projections
    assert (heads.norms is not None) == (describe(tiny_lm.model).model_type in ("gemma2", "gemma3_text"))

    def keep(index):
        def hook(module, args, output):
            written[index] = output[:, -1, :].detach().clone()

        return hook

    handles = [module.register_forward_hook(keep(i)) for i, module in enumerate(adds)]
    try:
        with torch.inference_mode(), capture_head_outputs(heads) as outputs:
            tiny_lm.model(**batch.inputs())
    finally:
        for handle in handles:
            handle.remove()
    for row in range(len(TEXTS)):
        per_head = head_vectors(tiny_lm, np.stack([o[row].numpy() for o in outputs]))
        for layer, projection in enumerate(heads.projections):
            with torch.inference_mode():
                bias = projection(torch.zeros(1, 1, heads.n_heads * heads.head_dim))[0, 0]
            if heads.norms is not None:
                bias = torch.zeros_like(bias)  # Gemma's projections have none; the norm's factor covers the rest
            np.testing.assert_allclose(
                per_head[layer].sum(axis=0) + bias.numpy(), written[layer][row].numpy(), atol=1e-5, rtol=1e-4
            )


def test_replacing_a_head_changes_that_slice_at_the_last_position_and_what_follows(tiny_lm):
    heads = attention_heads(tiny_lm)
    batch = encode(tiny_lm, TEXTS[:2])
    value = torch.full((2, heads.head_dim), 3.0)
    with torch.inference_mode():
        with capture_head_outputs(heads) as clean:
            tiny_lm.model(**batch.inputs())
        clean = [c.clone() for c in clean]
        # the patch is registered first, so the capture sees the patched input of the projection
        patch = Intervention(torch.tensor([1, 1]), value, site="head", heads=torch.tensor([2, 2]))
        with intervene(describe(tiny_lm.model), patch):
            with capture_head_outputs(heads) as seen:
                tiny_lm.model(**batch.inputs())
    torch.testing.assert_close(seen[0], clean[0])
    torch.testing.assert_close(seen[1][:, 2], value)
    others = [h for h in range(heads.n_heads) if h != 2]
    torch.testing.assert_close(seen[1][:, others], clean[1][:, others])
    assert not torch.allclose(seen[2], clean[2])  # the layers above read the patched stream
    assert all(len(p._forward_pre_hooks) == 0 for p in heads.projections)


@pytest.mark.parametrize("balance", [1, 10_000], ids=["a-pass-per-layer", "one-pass"])
def test_the_cached_head_scan_equals_full_recomputation_for_every_head(tiny_lm, balance, monkeypatch):
    """The scan recomputes only the last token, from each head's layer up, on the prompt's KV cache;
    a whole patched forward per head per prompt must give the same probabilities."""
    from taskvec.methods import heads as heads_module

    monkeypatch.setitem(heads_module.SWEEP_BALANCE_ROWS, "cpu", balance)
    means = mean_head_outputs(tiny_lm, TEXTS, batch_size=3)
    rng = np.random.default_rng(0)
    means = means + rng.normal(scale=2.0, size=means.shape).astype(np.float32)  # patches that matter
    targets = [tiny_lm.tokenizer.encode(c)[0] for c in "bbrx"]
    clean, patched = head_patch_scan(tiny_lm, TEXTS, targets, means, batch_size=3)
    clean_ref, patched_ref = head_patch_scan_naive(tiny_lm, TEXTS, targets, means)
    np.testing.assert_allclose(clean, clean_ref, atol=1e-6, rtol=1e-4)
    np.testing.assert_allclose(patched, patched_ref, atol=1e-6, rtol=1e-4)
    assert np.abs(patched - clean[:, None, None]).max() > 1e-4  # the patches changed something


def test_the_mean_head_output_is_the_mean_over_prompts(tiny_lm):
    heads = attention_heads(tiny_lm)
    means = mean_head_outputs(tiny_lm, TEXTS, batch_size=2)
    assert means.shape == (heads.n_layers, heads.n_heads, heads.head_dim)
    alone = []
    for text in TEXTS:
        with torch.inference_mode(), capture_head_outputs(heads) as outputs:
            tiny_lm.model(**encode(tiny_lm, [text]).inputs())
        alone.append(torch.stack(outputs)[:, 0].numpy())
    np.testing.assert_allclose(means, np.mean(alone, axis=0), atol=1e-5, rtol=1e-5)


def test_attribution_patching_is_the_first_order_term_of_each_heads_patch(tiny_lm):
    """The estimate for every head equals, text by text and with no padding, the unpatched probability
    plus the derivative of the probability along the patch (the head's output moved from its own
    value toward the mean), by central finite differences through whole patched forwards; batched
    with left padding, as the study runs it."""
    heads = attention_heads(tiny_lm)
    rng = np.random.default_rng(0)
    means = rng.standard_normal((heads.n_layers, heads.n_heads, heads.head_dim)).astype(np.float32)
    targets = [tiny_lm.tokenizer.encode(c)[0] for c in "bbrx"]
    clean, estimated = head_attribution(tiny_lm, TEXTS, targets, means, batch_size=3)
    # the reference in float64 (the same weights), so that finite differences resolve the derivative
    exact = dataclasses.replace(tiny_lm, model=copy.deepcopy(tiny_lm.model).double())
    heads, arch = attention_heads(exact), describe(exact.model)
    step = 1e-3  # central differences: error of order step squared; a much smaller one meets float32 noise
    derivatives = np.zeros_like(estimated, dtype=np.float64)
    for i, text in enumerate(TEXTS):
        batch = encode(exact, [text])
        with torch.inference_mode(), capture_head_outputs(heads) as outputs:
            logits = exact.model(**batch.inputs()).logits[0, -1]
        assert clean[i] == pytest.approx(float(torch.softmax(logits, -1)[targets[i]]), rel=1e-5)
        for layer in range(heads.n_layers):
            for head in range(heads.n_heads):
                own = outputs[layer][0, head]
                change = torch.as_tensor(means[layer, head]).double() - own
                probabilities = []
                for sign in (1, -1):
                    patch = Intervention(layer, own + sign * step * change, site="head", heads=head)
                    with torch.inference_mode(), intervene(arch, patch) as fired:
                        logits = exact.model(**batch.inputs()).logits[0, -1]
                    assert fired[layer] == 1
                    probabilities.append(float(torch.softmax(logits, -1)[targets[i]]))
                derivatives[i, layer, head] = (probabilities[0] - probabilities[1]) / (2 * step)
    scale = np.abs(derivatives).max()
    np.testing.assert_allclose(estimated - clean[:, None, None], derivatives, rtol=1e-3, atol=1e-3 * scale)
    assert np.abs(estimated - clean[:, None, None]).max() > 1e-4  # the estimates are not all zero
