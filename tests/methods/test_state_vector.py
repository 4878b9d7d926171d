"""The state vector (taskvec.methods.state_vector) against its authors' inner and momentum
optimisation, written out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from by_hand import FMT, PAIRS

from taskvec import api, methods
from taskvec.architectures import describe
from taskvec.errors import ConfigError
from taskvec.forward.patched import patched_next_tokens
from taskvec.prompts import PromptFormat


def _projection_inputs_by_hand(lm, text: str) -> list[torch.Tensor]:
    """Every block's attention output projection input, ``[positions, width]``, one text alone."""
    from taskvec.methods.heads import attention_heads

    seen = {}
    projections = attention_heads(lm).projections

    def keep(i):
        def hook(module, args, kwargs):
            seen[i] = (args[0] if args else next(iter(kwargs.values())))[0].detach().clone()

        return hook

    handles = [p.register_forward_pre_hook(keep(i), with_kwargs=True) for i, p in enumerate(projections)]
    try:
        with torch.inference_mode():
            lm.model(torch.tensor([lm.tokenizer(text).input_ids]))
    finally:
        for h in handles:
            h.remove()
    return [seen[i] for i in range(len(projections))]


def state_vector_by_hand(lm, pool, fmt, momentum: bool) -> np.ndarray:
    """The authors' code, written out: each prompt's states at each demonstration's separator (found by
    tokenizing the prompt up to it) and the query's last token, averaged over prompts; their inner
    optimisation (``FixOptimizer``, 7 weights of 1: the last 7 of the demonstrations' states and the
    query's) and momentum step (``FixOneStepOptimizer``: weights 1, 2, 4, 8, 16, 0 on the last 6
    differences of [demonstrations' states..., inner], step size 1)."""
    per_prompt = []
    for p in pool:
        text = fmt.render(p.demonstrations, p.query)
        values = _projection_inputs_by_hand(lm, text)
        positions = []
        for i, (x, _) in enumerate(p.demonstrations):
            prefix = fmt.render(p.demonstrations[:i], x)  # the demonstrations before, then this one up to `>`
            positions.append(len(lm.tokenizer(prefix).input_ids) - 1)
        positions.append(len(lm.tokenizer(text).input_ids) - 1)
        per_prompt.append(torch.stack([torch.stack([v[at] for v in values]) for at in positions]).double())
    seq = list(torch.stack(per_prompt).mean(dim=0))  # k + 1 entries of [n_layers, width]
    betas = [1.0] * 7
    start = len(seq) - len(betas)
    inner = sum(b * seq[start + i] for i, b in enumerate(betas)) / sum(betas)
    if not momentum:
        return inner.float().numpy()
    weights = [1, 2, 4, 8, 16, 0]
    g = seq[:-1] + [inner]
    delta = sum(w * (g[i] - g[i - 1]) for w, i in zip(weights, range(len(g) - len(weights), len(g))))
    return (inner + delta / sum(weights)).float().numpy()


@pytest.mark.parametrize("momentum", [False, True])
def test_the_state_vector_is_its_authors_inner_and_momentum_optimisation(tiny_lm, momentum):
    """k = 8 demonstrations, so that the authors' windows (the last 6 demonstrations; the last 5
    differences) leave some out (in a short format: the tiny GPT models take 64 positions); the pool's
    prompts batched with left padding."""
    from taskvec.prompts import demonstration_sets

    fmt = PromptFormat(demonstration="{x}>{y}", query="{x}>", separator=" ")
    pairs = [(c * (1 + i % 3), c.upper()) for i, c in enumerate("abcdefghijklmnopqrstuvwx")]  # of 3 lengths
    pool = demonstration_sets(pairs, 8, 2, 3, "pool")
    assert len({len(fmt.render(p.demonstrations, p.query)) for p in pool}) > 1  # so the batch is padded
    name = "state_vector_momentum" if momentum else "state_vector"
    got = methods.get(name).extract(tiny_lm, pool, fmt, 2).values
    expected = state_vector_by_hand(tiny_lm, pool, fmt, momentum)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_the_state_vector_replaces_the_heads_outputs_up_to_the_chosen_block_by_what_that_gives(tiny_lm):
    """Each L's dev accuracy is what hand-written pre-hooks replacing the last token's projection input
    in blocks 0 to L give, query by query; and the file's vector goes in at the chosen L."""
    from taskvec.evaluate import token_decoder
    from taskvec.methods.heads import attention_heads

    vector = api.task_vector(tiny_lm, PAIRS, k=3, contexts=3, dummies=2, method="state_vector")
    choice = vector.metadata["layer_choice"]
    projections = attention_heads(tiny_lm).projections
    decode = token_decoder(tiny_lm)

    def predict(query: str, last: int) -> int:
        def replace(at):
            def hook(module, args, kwargs):
                z = (args[0] if args else next(iter(kwargs.values()))).clone()
                z[0, -1] = torch.as_tensor(vector.vectors[at], dtype=z.dtype)
                return ((z, *args[1:]), kwargs) if args else (args, {next(iter(kwargs)): z})

            return hook

        handles = [projections[at].register_forward_pre_hook(replace(at), with_kwargs=True) for at in range(last + 1)]
        try:
            with torch.inference_mode():
                return int(tiny_lm.model(torch.tensor([tiny_lm.tokenizer(query).input_ids])).logits[0, -1].argmax())
        finally:
            for h in handles:
                h.remove()

    held_out = choice["held_out"]
    answers = {p.input: p.outputs for p in PAIRS}
    for last, accuracy in enumerate(choice["accuracy_by_layer"]):
        right = [decode(predict(FMT.query.format(x=x), last)).strip() in answers[x] for x in held_out]
        assert accuracy == pytest.approx(np.mean(right))
    assert choice["configurations"] == describe(tiny_lm.model).n_layers
    query = FMT.query.format(x="b")
    record = vector.method.intervention(vector.vectors, vector.layer, 1.0, 1)
    assert patched_next_tokens(tiny_lm, [query], record)[0] == predict(query, vector.layer)
    with pytest.raises(ConfigError, match="no one block's theta"):
        _ = vector.theta
