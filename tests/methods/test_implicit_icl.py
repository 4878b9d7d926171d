"""Implicit in-context learning (taskvec.implicit_icl) against direct, slow implementations of its
authors' formulas: each text alone, the sub-layers' outputs read and changed by plain forward hooks,
the calibration as a hand-written loop; on tiny random-weight models of every architecture."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tiny_model
from taskvec import api, methods
from taskvec.answers import answer_token
from taskvec.architectures import describe
from taskvec.forward.patched import patched_next_tokens
from taskvec.methods import implicit_icl
from taskvec.prompts import PromptFormat, demonstration_sets
from taskvec.tasks.base import Pair

FMT = PromptFormat()
# inputs of three lengths, so that a batch is left-padded
PAIRS = [(c * (1 + i % 3), c.upper()) for i, c in enumerate("abcdefghijkl")]


def _output(value):
    return value[0] if isinstance(value, tuple) else value


def _site_modules(lm):
    arch = describe(lm.model)
    return [arch.site_modules(site) for site in implicit_icl.SITES]


@torch.inference_mode()
def context_vectors_by_hand(lm, pairs, fmt) -> np.ndarray:
    """Each pair alone, unbatched: the attention's and the MLP's outputs at the last token."""
    sites = _site_modules(lm)
    n_layers = len(sites[0])
    total = np.zeros((n_layers, 2, lm.model.config.hidden_size))
    for x, y in pairs:
        seen: dict = {}

        def keep(key, store=seen):
            return lambda module, args, out: store.__setitem__(key, _output(out)[0, -1])

        handles = [
            module.register_forward_hook(keep((at, j)))
            for j, modules in enumerate(sites)
            for at, module in enumerate(modules)
        ]
        try:
            lm.model(torch.tensor([lm.tokenizer(fmt.demonstration.format(x=x, y=y) + fmt.separator).input_ids]))
        finally:
            for h in handles:
                h.remove()
        total += np.array([[seen[at, j].double().numpy() for j in range(2)] for at in range(n_layers)])
    return total / len(pairs)


def injected_by_hand(lm, contexts, weights, scales, noise_from=None):
    """Plain forward hooks making every sub-layer's output ``scale * x + weight * c`` at every
    position; with ``noise_from`` (a generator), then Gaussian noise of 0.001 times each position's norm."""
    handles = []

    def make(at, j):
        def hook(module, args, out):
            x = _output(out)
            new = scales[at, j] * x + weights[at, j] * torch.as_tensor(contexts[at, j], dtype=x.dtype)
            if noise_from is not None:
                draw = torch.randn(new.shape, generator=noise_from)
                new = new + draw * 0.001 * new.detach().norm(dim=-1, keepdim=True)
            return (new, *out[1:]) if isinstance(out, tuple) else new

        return hook

    for j, modules in enumerate(_site_modules(lm)):
        handles += [module.register_forward_hook(make(at, j)) for at, module in enumerate(modules)]
    return handles


def test_context_vectors_are_each_pairs_sub_layer_outputs_alone_averaged(tiny_lm):
    got = implicit_icl.context_vectors(tiny_lm, PAIRS, FMT, batch_size=5)
    n_layers = describe(tiny_lm.model).n_layers
    assert got.shape == (n_layers, 2, tiny_lm.model.config.hidden_size) and got.dtype == np.float32
    np.testing.assert_allclose(got, context_vectors_by_hand(tiny_lm, PAIRS, FMT), rtol=1e-4, atol=1e-5)


def test_the_injection_is_scale_times_output_plus_weight_times_context_everywhere(tiny_lm):
    """The method's records, batched and left-padded, give the logits of hand-written hooks on each
    text alone, at every position (the prompt's and, through the generation, every generated token's)."""
    rng = np.random.default_rng(0)
    n_layers, hidden = describe(tiny_lm.model).n_layers, tiny_lm.model.config.hidden_size
    contexts = rng.normal(scale=3.0, size=(n_layers, 2, hidden)).astype(np.float32)
    coefficients = np.stack([rng.uniform(-1, 1, (n_layers, 2)), rng.uniform(0.3, 1.7, (n_layers, 2))], axis=-1).astype(
        np.float32
    )
    vectors = implicit_icl.pack(contexts, coefficients)
    back = implicit_icl.unpack(vectors)
    assert np.array_equal(back[0], contexts) and np.array_equal(back[1], coefficients)
    method = methods.get("implicit_icl")
    texts = [FMT.query.format(x=x) for x, _ in PAIRS[:5]]
    got = patched_next_tokens(tiny_lm, texts, method.intervention(vectors, -1, 1.0, len(texts)), batch_size=3)
    from taskvec.hooks.intervention import intervene

    arch = describe(tiny_lm.model)
    ours = []
    with torch.inference_mode():
        for text in texts:
            with intervene(arch, method.intervention(vectors, -1, 1.0, 1)):
                ours.append(tiny_lm.model(torch.tensor([tiny_lm.tokenizer(text).input_ids])).logits[0])
    handles = injected_by_hand(tiny_lm, contexts, coefficients[..., 0], coefficients[..., 1])
    try:
        with torch.inference_mode():
            for text, token, mine in zip(texts, got, ours):
                logits = tiny_lm.model(torch.tensor([tiny_lm.tokenizer(text).input_ids])).logits[0]
                torch.testing.assert_close(mine, logits, rtol=1e-4, atol=1e-4)  # every position
                assert int(logits[-1].argmax()) == token
    finally:
        for h in handles:
            h.remove()
    plain = patched_next_tokens(
        tiny_lm,
        texts,
        implicit_icl.interventions(contexts, np.zeros((n_layers, 2)), np.ones((n_layers, 2))),
        batch_size=3,
    )
    from taskvec.forward.readout import next_tokens

    assert np.array_equal(plain, next_tokens(tiny_lm, texts, 3))  # weight 0, scale 1: the model itself


def test_the_schedule_warms_up_from_zero_then_decays_to_zero_by_a_cosine():
    steps = 100
    rates = [implicit_icl.learning_rate(s, steps) for s in range(steps + 1)]
    assert rates[0] == 0 and rates[5] == 1 and rates[2] == pytest.approx(0.4)
    assert rates[5 + 95 // 2] == pytest.approx(0.5 * (1 + math.cos(math.pi * 47 / 95)))
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(rates[5:], rates[6:]))


def test_the_batches_go_through_every_pair_each_epoch_in_a_seeded_order():
    order = implicit_icl.batch_order(5, 7, seed=3)
    assert [len(b) for b in order] == [2, 2, 1, 2, 2, 1, 2]
    assert sorted(np.concatenate(order[:3])) == list(range(5)) == sorted(np.concatenate(order[3:6]))
    assert all(np.array_equal(a, b) for a, b in zip(order, implicit_icl.batch_order(5, 7, seed=3)))
    assert not all(np.array_equal(a, b) for a, b in zip(order, implicit_icl.batch_order(5, 7, seed=4)))


def calibration_by_hand(lm, contexts, pairs, fmt, steps, seed):
    """The authors' loop written out, without noise: each batch's texts one at a time (no padding),
    the loss their mean, AdamW and the warm-up-cosine schedule from torch's own classes."""
    n_layers = contexts.shape[0]
    weights = torch.full((n_layers, 2), 0.1, requires_grad=True)
    scales = torch.ones((n_layers, 2), requires_grad=True)
    optimiser = torch.optim.AdamW([weights, scales], lr=0.01, weight_decay=1e-3)
    warm = max(1, round(0.05 * steps))

    def factor(step):
        if step < warm:
            return step / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
    for p in lm.model.parameters():
        p.requires_grad_(False)
    rng = np.random.default_rng([seed, len(pairs)])
    batches = []
    while len(batches) < steps:
        order = rng.permutation(len(pairs))
        batches += [order[i : i + 2] for i in range(0, len(pairs), 2)]
    for rows in batches[:steps]:
        handles = injected_by_hand(lm, contexts, weights, scales)
        try:
            losses = []
            for i in rows:
                x, y = pairs[i]
                text = fmt.query.format(x=x)
                logits = lm.model(torch.tensor([lm.tokenizer(text).input_ids])).logits[0, -1]
                losses.append(
                    torch.nn.functional.cross_entropy(logits[None], torch.tensor([answer_token(lm, text, y)]))
                )
            loss = torch.stack(losses).mean()
        finally:
            for h in handles:
                h.remove()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    for p in lm.model.parameters():
        p.requires_grad_(True)
    return torch.stack([weights.detach(), scales.detach()], dim=-1).numpy()


def test_the_calibration_is_the_authors_loop(tiny_lm):
    """Without noise, the batched, padded calibration ends where the hand-written loop does, and
    leaves the model's weights without gradients."""
    pairs = PAIRS[:5]
    contexts = implicit_icl.context_vectors(tiny_lm, pairs, FMT)
    got, losses = implicit_icl.train_coefficients(tiny_lm, contexts, pairs, FMT, steps=7, noise=0.0)
    expected = calibration_by_hand(tiny_lm, contexts, pairs, FMT, steps=7, seed=0)
    assert got.shape == (describe(tiny_lm.model).n_layers, 2, 2) and len(losses) == 7
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got[..., 0], 0.1)  # it moved
    assert all(p.grad is None for p in tiny_lm.model.parameters())


def test_the_noise_is_seeded_and_scaled_by_each_positions_norm(tiny_lm):
    """A batch's loss and gradient with noise equal those of hand-written hooks that add, after the
    injection, the same draws times 0.001 times each position's norm (each text alone; the batch is
    of one length here); a rerun of the calibration gives the same coefficients, another seed others."""
    rng = np.random.default_rng(2)
    n_layers = describe(tiny_lm.model).n_layers
    contexts = implicit_icl.context_vectors(tiny_lm, PAIRS[:4], FMT)
    weights = torch.tensor(rng.uniform(-1, 1, (n_layers, 2)), dtype=torch.float32, requires_grad=True)
    scales = torch.tensor(rng.uniform(0.5, 1.5, (n_layers, 2)), dtype=torch.float32, requires_grad=True)
    texts = [FMT.query.format(x=x) for x in ("a", "b")]
    assert len({len(tiny_lm.tokenizer(t).input_ids) for t in texts}) == 1
    targets = torch.tensor([3, 5])
    loss = implicit_icl.calibration_loss(
        tiny_lm, texts, targets, torch.from_numpy(contexts), weights, scales, 0.001, torch.Generator().manual_seed(9)
    )
    got = torch.autograd.grad(loss, [weights, scales])
    handles = injected_by_hand(tiny_lm, contexts, weights, scales, noise_from=torch.Generator().manual_seed(9))
    try:
        ids = torch.tensor([tiny_lm.tokenizer(t).input_ids for t in texts])
        logits = tiny_lm.model(ids).logits[:, -1].float()
        expected_loss = torch.nn.functional.cross_entropy(logits, targets)
        expected = torch.autograd.grad(expected_loss, [weights, scales])
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    quiet = implicit_icl.calibration_loss(tiny_lm, texts, targets, torch.from_numpy(contexts), weights, scales, 0.0)
    assert float(quiet.detach()) != float(loss.detach())  # the noise is there

    pairs = PAIRS[:3]
    got, _ = implicit_icl.train_coefficients(tiny_lm, contexts, pairs, FMT, steps=3, seed=5)
    again, _ = implicit_icl.train_coefficients(tiny_lm, contexts, pairs, FMT, steps=3, seed=5)
    other, _ = implicit_icl.train_coefficients(tiny_lm, contexts, pairs, FMT, steps=3, seed=6)
    assert np.array_equal(got, again) and not np.array_equal(got, other)


def test_the_methods_vector_file_and_application_on_a_tiny_model(tmp_path):
    """``taskvec vector --method implicit_icl``: the file holds the context vectors and the trained
    coefficients, says how they were trained and how many numbers are trainable, has no block and no
    strength to choose, and applies as written."""
    lm = tiny_model("llama")
    pairs = [Pair(x, (y,)) for x, y in PAIRS]
    vector = api.task_vector(lm, pairs, k=3, contexts=2, dummies=1, method="implicit_icl")
    n_layers, hidden = describe(lm.model).n_layers, lm.model.config.hidden_size
    assert vector.layer == -1 and vector.vectors.shape == (n_layers, 2 * hidden + 4)
    assert vector.metadata["trainable_parameters"] == 4 * n_layers
    assert vector.metadata["sites"] == ["attention_module", "mlp_module"]
    assert vector.metadata["training"]["steps"] == implicit_icl.STEPS
    assert vector.metadata["layer_choice"]["configurations"] == 1
    loaded = api.TaskVector.load(vector.save(tmp_path / "i2cl.safetensors"))
    assert np.array_equal(loaded.vectors, vector.vectors) and loaded.method.trained
    queries = ["aa", "bbb"]
    texts = [FMT.query.format(x=q) for q in queries]
    expected = patched_next_tokens(lm, texts, implicit_icl.vector_interventions(vector.vectors))
    applied = api.apply(lm, loaded, queries)
    assert [p.patched_first for p in applied] == [lm.tokenizer.decode([int(t)]).strip() for t in expected]
    with pytest.raises(api.ConfigError, match="strength"):
        api.task_vector(lm, pairs, k=3, contexts=2, dummies=1, method="implicit_icl", strength=2.0)


def test_the_controls_keep_the_trained_coefficients(monkeypatch):
    """The shuffled-label control: the coefficients trained on the real pool with the shuffled pool's
    context vectors, no training; the random control: each context vector turned at its norm."""
    lm = tiny_model("llama")
    pool = demonstration_sets(PAIRS, 3, 1, 2, "pool")
    method = methods.get("implicit_icl")
    made = method.extract(lm, pool, FMT, 2, method.settings({"calibration_steps": 3}))
    vectors = made.values
    assert made.training.steps == 3
    _, coefficients = implicit_icl.unpack(vectors)
    assert np.array_equal(made.coefficients, coefficients)

    def no_training(*args, **kwargs):
        raise AssertionError("the control trains nothing")

    monkeypatch.setattr(implicit_icl, "train_coefficients", no_training)
    from taskvec.methods.pool import shuffle_labels

    control = method.extract(lm, shuffle_labels(pool, 0), FMT, 2, keep=made)
    contexts, kept = implicit_icl.unpack(control.values)
    assert np.array_equal(kept, coefficients) and not np.allclose(contexts, implicit_icl.unpack(vectors)[0])
    random = method.random_like(made, 1)
    turned, kept = implicit_icl.unpack(random.values)
    assert np.array_equal(kept, coefficients)
    own = implicit_icl.unpack(vectors)[0]
    np.testing.assert_allclose(np.linalg.norm(turned, axis=-1), np.linalg.norm(own, axis=-1), rtol=1e-5)
    assert not np.allclose(turned, own)


def test_a_file_written_at_the_post_norm_sites_applies_there():
    """Vector files written before the module sites say in their metadata where their context vectors
    were read (on Gemma, after the post-norms): they are injected there, not at today's sites."""
    method = methods.get("implicit_icl")
    rows = implicit_icl.pack(np.ones((2, 2, 3), dtype=np.float32), np.ones((2, 2, 2), dtype=np.float32))
    old = method.from_rows(rows, {"sites": ["attention_output", "mlp_output"]})
    assert {r.site for r in method.intervention(old, -1, 1.0, 1).records} == {"attention_output", "mlp_output"}
    new = method.from_rows(rows, {})
    assert {r.site for r in method.intervention(new, -1, 1.0, 1).records} == {"attention_module", "mlp_module"}


def test_on_gemma_the_module_sites_are_before_the_post_norms():
    """The authors hook the attention and MLP modules; on Gemma 2 and 3 a norm sits between each and
    the residual stream, and implicit ICL's sites are the modules' own outputs, before it (elsewhere
    the same modules as the sub-layers' outputs)."""
    gemma = describe(tiny_model("gemma3_text").model)
    assert gemma.site_modules("attention_module") == [layer.self_attn for layer in gemma.layers]
    assert gemma.site_modules("mlp_module") == [layer.mlp for layer in gemma.layers]
    assert gemma.site_modules("attention_output") == [layer.post_attention_layernorm for layer in gemma.layers]
    llama = describe(tiny_model("llama").model)
    assert llama.site_modules("attention_module") == llama.site_modules("attention_output")
    assert llama.site_modules("mlp_module") == llama.site_modules("mlp_output")
