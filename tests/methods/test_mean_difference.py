"""The mean difference (taskvec.methods.mean_difference) against a slow hook-by-hook computation:
extraction, addition at the last and every generated token, identity at strength 0, and the choice
of block and strength."""

from __future__ import annotations

import numpy as np
import pytest
from by_hand import FMT, PAIRS, greedy_by_hand, states_by_hand

from conftest import tiny_model
from taskvec import api, methods
from taskvec.forward.capture import last_token_states
from taskvec.forward.patched import patched_next_tokens, patched_sweep
from taskvec.forward.readout import next_tokens


def test_the_mean_difference_is_the_demonstrations_mean_effect_on_the_last_token(tiny_lm):
    vector = api.task_vector(tiny_lm, PAIRS, layer=1, k=3, contexts=3, dummies=2, method="mean_difference")
    differences = [
        states_by_hand(tiny_lm, FMT.render([tuple(d) for d in c["demonstrations"]], x))
        - states_by_hand(tiny_lm, FMT.query.format(x=x))
        for c in vector.metadata["contexts"]
        for x in c["dummies"]
    ]
    np.testing.assert_allclose(vector.vectors, np.mean(differences, axis=0), atol=2e-5, rtol=1e-4)
    assert (vector.metadata["method"], vector.metadata["operation"], vector.strength) == ("mean_difference", "add", 1.0)


def test_a_mean_difference_is_added_at_the_last_token_and_every_generated_one(tiny_lm):
    made = api.task_vector(tiny_lm, PAIRS, layer=2, k=3, contexts=2, method="mean_difference", strength=3.0)
    # a random model's demonstrations barely move its stream: a vector of the stream's own scale in the
    # file instead, so that adding it changes the answers and the test can tell the paths apart
    scale = np.linalg.norm(states_by_hand(tiny_lm, FMT.query.format(x="y"))[2])
    vectors = np.random.default_rng(0).standard_normal(made.vectors.shape).astype(np.float32)
    vector = api.TaskVector(vectors * scale / np.linalg.norm(vectors[2]), 2, made.metadata)
    queries = ["y", "z"]
    predictions = api.apply(tiny_lm, vector, queries)
    steps = vector.format.max_answer_tokens
    changed = False
    for query, prediction in zip(queries, predictions):
        text = FMT.query.format(x=query)
        tokens = greedy_by_hand(tiny_lm, text, 2, 3.0 * vector.vectors[2], steps)
        expected = tiny_lm.tokenizer.decode(tokens).split(FMT.separator)[0].strip()
        assert prediction.patched_first == tiny_lm.tokenizer.decode(tokens[:1]).strip()
        assert prediction.patched == expected, query
        bare = greedy_by_hand(tiny_lm, text, 2, None, steps)
        assert prediction.bare == tiny_lm.tokenizer.decode(bare).split(FMT.separator)[0].strip()
        changed = changed or tokens != bare
    assert changed  # the addition does change the answers: the comparison is not of two bare runs


def test_at_strength_zero_a_mean_difference_changes_nothing():
    lm = tiny_model("llama")
    vector = api.task_vector(lm, PAIRS, layer=1, k=3, contexts=2, method="mean_difference", strength=0.0)
    texts = [FMT.query.format(x=q) for q in "mnop"]
    method = methods.get("mean_difference")
    patched = patched_next_tokens(lm, texts, method.intervention(vector.vectors, 1, 0.0, len(texts)))
    np.testing.assert_array_equal(patched, next_tokens(lm, texts))
    assert [p.bare for p in api.apply(lm, vector, list("mnop"))] == [
        p.patched for p in api.apply(lm, vector, list("mnop"))
    ]


def test_the_block_and_strength_are_chosen_by_what_adding_really_gives_on_the_held_out_pairs():
    """The block of best accuracy in the layer sweep at strength 1, then the grid's strengths at that
    block: every accuracy is what adding really gives (the sweep's shortcut equals the intervention
    token for token), and about as many configurations as blocks are tried."""
    lm = tiny_model("qwen2")
    vector = api.task_vector(lm, PAIRS, k=3, contexts=3, method="mean_difference")
    choice = vector.metadata["layer_choice"]
    method = methods.get("mean_difference")
    grid = method.strengths
    assert set(choice["accuracy_by_strength"]) == {str(s) for s in grid}
    assert choice["configurations"] == 4 + len(grid) - 1
    queries = [FMT.query.format(x=x) for x in choice["held_out"]]
    states = last_token_states(lm, queries)
    bare = next_tokens(lm, queries)

    def right(tokens) -> float:
        return pytest.approx(
            np.mean([lm.tokenizer.decode([t]).strip() == x.upper() for t, x in zip(tokens, choice["held_out"])])
        )

    swept = patched_sweep(lm, queries, method.swept_values(vector.vectors, 1.0, len(queries), states))
    changed = False
    for layer in range(4):
        added = patched_next_tokens(lm, queries, method.intervention(vector.vectors, layer, 1.0, len(queries)))
        np.testing.assert_array_equal(swept[:, layer], added)
        assert choice["accuracy_by_layer"][layer] == right(added) == choice["accuracy_by_strength"]["1.0"][layer]
        changed |= bool((added != bare).any())
    assert changed  # the vector does change predictions: the comparison is not of two bare runs
    curve = choice["accuracy_by_layer"]
    assert vector.layer == curve.index(max(curve))
    at_block = {}
    for strength in grid:
        row = choice["accuracy_by_strength"][str(strength)]
        added = patched_next_tokens(
            lm, queries, method.intervention(vector.vectors, vector.layer, strength, len(queries))
        )
        assert row[vector.layer] == right(added)
        assert strength == 1.0 or all(v is None for i, v in enumerate(row) if i != vector.layer)
        at_block[strength] = row[vector.layer]
    assert vector.strength == next(s for s in grid if at_block[s] == max(at_block.values()))
