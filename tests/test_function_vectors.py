"""Function vectors and their controls, on tiny random models (mechanics) and synthetic numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_model
from taskvec.answers import answer_token
from taskvec.architectures import describe
from taskvec.forward.batching import encode
from taskvec.forward.patched import next_token_variants
from taskvec.forward.readout import next_tokens
from taskvec.hooks.intervention import Intervention
from taskvec.methods.heads import default_head_count, function_vector, head_vectors, mean_head_outputs, top_heads
from taskvec.methods.pool import shuffle_labels
from taskvec.prompts import Prompt, PromptFormat
from taskvec.studies.function_vectors.vectors import add_sweep, head_effects, plain_and_added_next_tokens

FMT = PromptFormat()
DEMOS = (("a", "A"), ("b", "B"), ("c", "C"), ("d", "D"), ("e", "E"))
PROMPTS = [Prompt("dev", i, DEMOS, query=q, answers=(q.upper(),), dummies=("x",)) for i, q in enumerate("fgh")]


def test_shuffled_labels_keep_inputs_outputs_and_query_and_depend_only_on_the_seed():
    shuffled = shuffle_labels(PROMPTS, seed=3)
    again = shuffle_labels(PROMPTS, seed=3)
    assert shuffled == again
    for before, after in zip(PROMPTS, shuffled):
        assert [x for x, _ in after.demonstrations] == [x for x, _ in before.demonstrations]
        assert sorted(y for _, y in after.demonstrations) == sorted(y for _, y in before.demonstrations)
        assert (after.query, after.answers) == (before.query, before.answers)
    assert any(p.demonstrations != DEMOS for p in shuffled)  # 1 in 120 per prompt to stay put
    assert shuffle_labels(PROMPTS, seed=4) != shuffled


def test_top_heads_are_the_largest_effects_with_ties_broken_by_position():
    aie = np.array([[0.1, 0.5, 0.0], [0.5, -1.0, 0.2]])
    assert top_heads(aie, 3) == [(0, 1), (1, 0), (1, 2)]
    assert top_heads(aie, 0) == []


def test_the_function_vector_sums_the_chosen_heads_in_residual_space():
    lm = tiny_model("llama")
    means = mean_head_outputs(lm, ["example:a->A\nexample:b->", "example:c->C\nexample:d->"])
    vectors = head_vectors(lm, means)
    np.testing.assert_allclose(function_vector(lm, means, [(1, 2)]), vectors[1, 2], atol=1e-6)
    np.testing.assert_allclose(function_vector(lm, means, [(1, 2), (3, 0)]), vectors[1, 2] + vectors[3, 0], atol=1e-6)
    assert not function_vector(lm, means, []).any()


def test_the_default_head_count_scales_the_papers_ten_of_gpt_js_448_heads():
    lm = tiny_model("llama")  # 4 layers x 4 heads = 16 heads: 16 * 10 / 448 rounds to 0, at least 1
    assert default_head_count(lm) == 1
    gpt_j_shaped = tiny_model("llama", n_layers=28, num_attention_heads=16, num_key_value_heads=16)
    assert default_head_count(gpt_j_shaped) == 10


def test_the_answer_token_is_the_first_token_after_the_prompt():
    lm = tiny_model("llama")
    text = FMT.render(DEMOS, "f")
    assert answer_token(lm, text, "F") == lm.tokenizer.encode("F")[0]
    assert answer_token(lm, text, "Fx") == lm.tokenizer.encode("F")[0]


def _full_forward_log_probs(lm, texts, layer, vectors, add):
    """The reference: one whole forward per text with a hook that adds ``vectors[i]`` to (or puts it
    in place of) block ``layer``'s output at the last token."""
    arch = describe(lm.model)
    out = []
    for i, text in enumerate(texts):
        vector = torch.from_numpy(vectors[i])

        def patch(module, args, output, vector=vector):
            hidden = output[0] if isinstance(output, tuple) else output
            hidden[:, -1, :] = hidden[:, -1, :] + vector if add else vector
            return output

        handle = arch.layers[layer].register_forward_hook(patch)
        try:
            with torch.inference_mode():
                logits = lm.model(**encode(lm, [text]).inputs()).logits[0, -1]
        finally:
            handle.remove()
        out.append(torch.log_softmax(logits.float(), dim=-1).numpy())
    return np.stack(out)


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gemma3_text"])
def test_adding_a_vector_after_each_block_equals_a_hook_that_adds_it(model_type):
    lm = tiny_model(model_type)
    arch = describe(lm.model)
    texts = [FMT.render(DEMOS[:2], "f"), "example:qq->", "x"]
    vector = np.random.default_rng(0).normal(scale=4.0, size=lm.model.config.hidden_size).astype(np.float32)
    swept = add_sweep(lm, texts, vector, batch_size=2)
    for layer in range(arch.n_layers):
        reference = _full_forward_log_probs(lm, texts, layer, [vector] * len(texts), add=True)
        assert np.array_equal(reference.argmax(axis=1), swept[:, layer])
    plain = next_tokens(lm, texts, batch_size=1)
    for layer in (0, arch.n_layers - 1):
        unpatched, (once, twice) = plain_and_added_next_tokens(lm, texts, layer, [vector, 2 * vector], batch_size=2)
        assert np.array_equal(unpatched, plain) and np.array_equal(once, swept[:, layer])
        doubled = _full_forward_log_probs(lm, texts, layer, [2 * vector] * len(texts), add=True)
        assert np.array_equal(twice, doubled.argmax(axis=1))


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gemma3_text", "qwen3"])
def test_every_patch_of_one_batch_equals_a_whole_patched_forward(model_type):
    """The comparison patches the bare test queries many ways (theta replaced, the FV added, the
    controls, the head-count curve) on one cached prefix and one unpatched last token; each must give
    what a whole forward with that patch gives: top token and, where kept, the log-probabilities."""
    lm = tiny_model(model_type)
    arch = describe(lm.model)
    texts = [FMT.render(DEMOS[:2], "f"), "example:qq->", "x", "example:[a,b]->"]
    rng = np.random.default_rng(1)
    hidden = lm.model.config.hidden_size
    per_text = rng.normal(scale=4.0, size=(len(texts), hidden)).astype(np.float32)
    shared = rng.normal(scale=4.0, size=hidden).astype(np.float32)
    patches = [
        Intervention(1, per_text),  # replace, one vector per text
        Intervention(0, shared, operation="add"),  # add, one vector for all
        Intervention(arch.n_layers - 1, shared),  # replace at the last block, the same vector for all
        Intervention(2, per_text, operation="add"),
    ]
    kept = (0, 1)
    variants = next_token_variants(lm, texts, patches, batch_size=3, log_probs=kept)
    assert np.array_equal(variants.plain, next_tokens(lm, texts, batch_size=1))
    for index, (patch, tokens, log_probs) in enumerate(zip(patches, variants.tokens, variants.log_probs, strict=True)):
        vectors = patch.vectors.numpy() if patch.vectors.ndim == 2 else [patch.vectors.numpy()] * len(texts)
        reference = _full_forward_log_probs(lm, texts, int(patch.layers), vectors, patch.operation == "add")
        assert np.array_equal(tokens, reference.argmax(axis=1))
        if index in kept:
            np.testing.assert_allclose(log_probs, reference, atol=1e-4, rtol=1e-4)
        else:
            assert log_probs is None
    assert not np.array_equal(variants.tokens[0], variants.plain)  # the patches changed predictions


def test_head_effects_average_the_rise_in_the_answers_probability():
    lm = tiny_model("llama")
    effects = head_effects(lm, PROMPTS, PROMPTS, FMT, seed=0, batch_size=2)
    assert effects.means.shape[:2] == effects.average_indirect_effect.shape == (4, 4)
    np.testing.assert_allclose(
        effects.average_indirect_effect, (effects.patched - effects.clean[:, None, None]).mean(axis=0)
    )
    assert ((effects.clean > 0) & (effects.clean < 1)).all()
