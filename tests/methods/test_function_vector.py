"""The function vector (taskvec.methods.function_vector) against its authors' code: heads ranked
exactly or by attribution patching, summed; the control's kept heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from by_hand import FMT, PAIRS, greedy_by_hand

from taskvec import api, methods
from taskvec.forward.patched import patched_next_tokens


@pytest.mark.parametrize("ranking", ["exact", "attribution"])
def test_the_function_vector_is_the_top_heads_mean_outputs_by_their_effect_on_shuffled_prompts(tiny_lm, ranking):
    """The pool's labelled prompts: each head's mean output over them (captured one text at a time),
    its effect with shuffled labels (every head patched in a whole forward for the exact ranking; the
    attribution estimate, itself tested against finite differences, for the other), the top heads'
    outputs summed through the output projection; added after a block, it gives what one hand-written
    hook adding it gives."""
    from taskvec.answers import answer_token
    from taskvec.forward.batching import encode
    from taskvec.methods.heads import (
        attention_heads,
        capture_head_outputs,
        head_attribution,
        head_patch_scan_naive,
        head_vectors,
        top_heads,
    )
    from taskvec.methods.pool import shuffle_labels
    from taskvec.prompts import demonstration_sets

    pool = demonstration_sets([(p.input, p.outputs[0]) for p in PAIRS], 3, 2, 3, "pool")
    assert all(p.query == p.dummies[0] and p.answers == (p.query.upper(),) for p in pool)
    name = "function_vector" if ranking == "exact" else "function_vector_attribution"
    made = methods.get(name).extract(tiny_lm, pool, FMT, 2)
    vectors = made.values

    heads = attention_heads(tiny_lm)
    outputs_by_text = []
    for p in pool:
        with torch.inference_mode(), capture_head_outputs(heads) as outputs:
            tiny_lm.model(**encode(tiny_lm, [FMT.render(p.demonstrations, p.query)]).inputs())
        outputs_by_text.append(torch.stack(outputs)[:, 0].numpy())
    means = np.mean(outputs_by_text, axis=0)
    shuffled = shuffle_labels(pool, 0)
    texts = [FMT.render(p.demonstrations, p.query) for p in shuffled]
    targets = [answer_token(tiny_lm, t, p.answers[0]) for t, p in zip(texts, shuffled)]
    scan = head_patch_scan_naive if ranking == "exact" else head_attribution
    clean, patched = scan(tiny_lm, texts, targets, means)
    effects = (patched - clean[:, None, None]).mean(axis=0)
    np.testing.assert_allclose(made.average_indirect_effect, effects, rtol=1e-3, atol=1e-6)
    top = top_heads(effects, max(1, round(heads.n_layers * heads.n_heads * 10 / 448)))
    assert list(made.heads) == top
    expected = np.sum([head_vectors(tiny_lm, means)[layer, head] for layer, head in top], axis=0)
    assert vectors.shape == (heads.n_layers, tiny_lm.model.config.hidden_size)
    np.testing.assert_allclose(vectors, np.repeat(expected[None], heads.n_layers, axis=0), rtol=1e-3, atol=1e-5)

    method = methods.get(name)
    query = FMT.query.format(x="q")
    record = method.intervention(vectors, 1, 4.0, 1)
    assert patched_next_tokens(tiny_lm, [query], record)[0] == greedy_by_hand(tiny_lm, query, 1, 4.0 * vectors[1], 1)[0]


def test_a_function_vector_file_names_its_heads(tiny_lm):
    vector = api.task_vector(tiny_lm, PAIRS, layer=1, k=3, contexts=2, dummies=2, method="function_vector")
    assert vector.metadata["method"] == "function_vector" and vector.layer == 1
    heads = vector.metadata["heads"]
    assert heads and all(len(h) == 2 for h in heads)


def test_a_function_vector_given_its_heads_sums_them_without_ranking_any(tiny_lm, monkeypatch):
    """A label control: the method's own heads, the pool's mean outputs, no scan."""
    import taskvec.methods.heads as heads_module
    from taskvec.methods.heads import head_vectors, mean_head_outputs
    from taskvec.prompts import demonstration_sets

    pool = demonstration_sets([(p.input, p.outputs[0]) for p in PAIRS], 3, 2, 3, "pool")

    def no_scan(*args, **kwargs):
        raise AssertionError("no head is ranked when the heads are given")

    monkeypatch.setattr(heads_module, "head_patch_scan", no_scan)
    from taskvec.methods.function_vector import HeadVectors

    kept = HeadVectors(np.zeros((1, 1)), heads=((1, 2), (0, 1)))
    vectors = methods.get("function_vector").extract(tiny_lm, pool, FMT, 2, keep=kept).values
    means = mean_head_outputs(tiny_lm, [FMT.render(p.demonstrations, p.query) for p in pool])
    expected = head_vectors(tiny_lm, means)[1, 2] + head_vectors(tiny_lm, means)[0, 1]
    np.testing.assert_allclose(vectors[0], expected, rtol=1e-4, atol=1e-5)
    assert (vectors == vectors[0]).all()


def test_the_head_count_is_chosen_on_held_out_queries_at_the_chosen_block(tiny_lm):
    """The layer sweep at the vector's own count, then at that block every strength with half and
    twice as many heads: the choice reports every count's accuracies, counts those configurations, and
    settles on the vector of the chosen count (the top heads of the same ranking, summed), which is
    what its intervention applies and what a vector file holds."""
    from taskvec.evaluate import token_decoder
    from taskvec.methods.function_vector import HEAD_COUNTS
    from taskvec.methods.heads import head_vectors, mean_head_outputs
    from taskvec.prompts import demonstration_sets
    from taskvec.scoring import first_token_correct

    pool = demonstration_sets([(p.input, p.outputs[0]) for p in PAIRS], 3, 2, 3, "pool")
    method = methods.get("function_vector")
    made = method.extract(tiny_lm, pool, FMT, 2)
    own = len(made.heads)
    queries = [FMT.query.format(x=p.input) for p in PAIRS[:6]]
    answers = [p.outputs for p in PAIRS[:6]]
    choice = method.choose(tiny_lm, made, queries, answers, "exact", batch_size=4)
    counts = sorted({min(len(made.ranked), max(1, round(own * f))) for f in HEAD_COUNTS})
    assert sorted(map(int, choice.extra_grid)) == counts and choice.extra["n_heads"] in counts
    sweep_then_strengths = len(made.values) + len(method.strengths) - 1
    assert choice.configurations == sweep_then_strengths + (len(counts) - 1) * len(method.strengths)
    decode = token_decoder(tiny_lm)
    for count, row in choice.extra_grid.items():
        other = made.with_heads(int(count))
        for strength, accuracy in row.items():
            patch = method.intervention(other, choice.layer, float(strength), len(queries))
            tokens = patched_next_tokens(tiny_lm, queries, patch, 4)
            assert accuracy == pytest.approx(
                np.mean([first_token_correct(decode(t), a, "exact") for t, a in zip(tokens, answers)])
            )
    assert choice.accuracy == max(a for row in choice.extra_grid.values() for a in row.values())
    settled, extra = method.settle(made, choice)
    assert extra == {} and settled.heads == made.ranked[: choice.extra["n_heads"]]
    means = mean_head_outputs(tiny_lm, [FMT.render(p.demonstrations, p.query) for p in pool], 2)
    shares = head_vectors(tiny_lm, means)
    expected = np.sum([shares[layer, head] for layer, head in settled.heads], axis=0)
    np.testing.assert_allclose(settled.values[0], expected, rtol=1e-4, atol=1e-6)
    by_extra = method.intervention(made, choice.layer, choice.strength, 1, **choice.extra)
    np.testing.assert_array_equal(
        by_extra.vectors, method.intervention(settled, choice.layer, choice.strength, 1).vectors
    )
    random = method.random_like(made, 0)  # keeps nothing a head count could rebuild it from
    assert (
        random.shares is None
        and np.shape(method.intervention(random, 1, 1.0, 1, n_heads=1).vectors)[-1] == made.values.shape[-1]
    )
