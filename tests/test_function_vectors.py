"""Function vectors and their controls, on tiny random models (mechanics) and synthetic numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_model
from taskvec.architectures import describe
from taskvec.forward import encode, next_tokens
from taskvec.function_vectors import (
    add_sweep,
    added_next_tokens,
    answer_token,
    default_head_count,
    function_vector,
    head_effects,
    plain_and_added_next_tokens,
    shuffle_labels,
    top_heads,
)
from taskvec.heads import head_vectors, mean_head_outputs
from taskvec.prompts import Prompt, PromptFormat

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


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gemma3_text"])
def test_adding_a_vector_after_each_block_equals_a_hook_that_adds_it(model_type):
    lm = tiny_model(model_type)
    arch = describe(lm.model)
    texts = [FMT.render(DEMOS[:2], "f"), "example:qq->", "x"]
    vector = np.random.default_rng(0).normal(scale=4.0, size=lm.model.config.hidden_size).astype(np.float32)
    swept = add_sweep(lm, texts, vector, batch_size=2)
    for layer in range(arch.n_layers):

        def add(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            hidden[:, -1, :] += torch.from_numpy(vector)
            return output

        handle = arch.layers[layer].register_forward_hook(add)
        try:
            with torch.inference_mode():
                for i, text in enumerate(texts):
                    logits = lm.model(**encode(lm, [text]).inputs()).logits[0, -1]
                    assert int(logits.argmax()) == swept[i, layer]
        finally:
            handle.remove()
    plain = next_tokens(lm, texts, batch_size=1)
    for layer in (0, arch.n_layers - 1):
        assert np.array_equal(added_next_tokens(lm, texts, layer, vector, batch_size=3), swept[:, layer])
        unpatched, (once, twice) = plain_and_added_next_tokens(lm, texts, layer, [vector, 2 * vector], batch_size=2)
        assert np.array_equal(unpatched, plain) and np.array_equal(once, swept[:, layer])
        assert np.array_equal(twice, added_next_tokens(lm, texts, layer, 2 * vector, batch_size=3))


def test_head_effects_average_the_rise_in_the_answers_probability():
    lm = tiny_model("llama")
    effects = head_effects(lm, PROMPTS, PROMPTS, FMT, seed=0, batch_size=2)
    assert effects.means.shape[:2] == effects.average_indirect_effect.shape == (4, 4)
    np.testing.assert_allclose(
        effects.average_indirect_effect, (effects.patched - effects.clean[:, None, None]).mean(axis=0)
    )
    assert ((effects.clean > 0) & (effects.clean < 1)).all()
