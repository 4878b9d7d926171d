"""Conceptor steering (taskvec.methods.conceptor) against its formulas written out by hand: the
correlation matrix of the pool's last-token streams, the conceptor R (R + alpha^-2 I)^-1, and the
stream after one block mapped by beta * C at the last token (one hand-written forward hook); the
layer sweep's shortcut equals the intervention; the aperture is chosen with block and strength."""

from __future__ import annotations

import numpy as np
import torch
from by_hand import FMT, PAIRS, residual, states_by_hand

from taskvec import methods
from taskvec.architectures import describe
from taskvec.forward.capture import last_token_states
from taskvec.forward.patched import patched_next_tokens, patched_sweep
from taskvec.methods.conceptor import conceptor
from taskvec.prompts import demonstration_sets


def _pool():
    return demonstration_sets([(p.input, p.outputs[0]) for p in PAIRS[:12]], 3, 2, 3, "pool")


def test_the_correlation_and_the_conceptor_are_their_formulas(tiny_lm):
    pool = _pool()
    made = methods.get("conceptor").extract(tiny_lm, pool, FMT, 2)
    samples = np.stack([states_by_hand(tiny_lm, FMT.render(p.demonstrations, d)) for p in pool for d in p.dummies])
    n_layers, hidden = samples.shape[1:]
    expected = np.stack([samples[:, i].T @ samples[:, i] / len(samples) for i in range(n_layers)])
    np.testing.assert_allclose(made.values.reshape(n_layers, hidden, hidden), expected, rtol=1e-3, atol=1e-4)
    r = expected[1].astype(np.float64)
    for aperture in (0.05, 1.0):
        direct = r @ np.linalg.inv(r + aperture**-2 * np.eye(hidden))
        np.testing.assert_allclose(conceptor(expected[1], aperture), direct, rtol=1e-3, atol=1e-5)


@torch.inference_mode()
def _mapped_by_hand(lm, text: str, layer: int, matrix: np.ndarray) -> int:
    """The next token with the stream after block ``layer`` at the last position mapped by ``matrix``."""
    block = describe(lm.model).layers[layer]

    def hook(module, args, output):
        stream = residual(output)
        stream[0, -1] = stream[0, -1] @ torch.as_tensor(matrix, dtype=stream.dtype).T
        return output

    handle = block.register_forward_hook(hook)
    try:
        return int(lm.model(torch.tensor([lm.tokenizer(text).input_ids])).logits[0, -1].argmax())
    finally:
        handle.remove()


def test_steering_maps_the_stream_after_one_block_and_the_sweep_equals_it(tiny_lm):
    method = methods.get("conceptor")
    made = method.extract(tiny_lm, _pool(), FMT, 2)
    queries = [FMT.query.format(x=x) for x in ("q", "rr", "s")]
    hidden = tiny_lm.model.config.hidden_size
    layer, beta, aperture = 1, 2.0, 0.1
    matrix = beta * conceptor(made.values[layer].reshape(hidden, hidden), aperture)
    record = method.intervention(made, layer, beta, len(queries), aperture=aperture)
    patched = patched_next_tokens(tiny_lm, queries, record)
    assert list(patched) == [_mapped_by_hand(tiny_lm, q, layer, matrix) for q in queries]
    bare = last_token_states(tiny_lm, queries)
    swept = patched_sweep(
        tiny_lm, queries, method.swept_values(made.values, beta, len(queries), bare, aperture=aperture)
    )
    assert np.array_equal(swept[:, layer], patched)


def test_the_aperture_is_chosen_with_the_block_and_every_configuration_counted(tiny_lm):
    method = methods.get("conceptor")
    made = method.extract(tiny_lm, _pool(), FMT, 2)
    queries = [FMT.query.format(x=x) for x in ("q", "rr", "s", "tt")]
    choice = method.choose(
        tiny_lm, made, queries, [(x.upper(),) for x in ("q", "rr", "s", "tt")], "exact", batch_size=2
    )
    n_layers = describe(tiny_lm.model).n_layers
    per_aperture = n_layers + len(method.strengths) - 1
    assert choice.configurations == len(method.apertures) * per_aperture
    assert choice.extra["aperture"] in method.apertures
    assert choice.accuracy == max(choice.extra_grid.values())
    first_best = next(a for a in method.apertures if choice.extra_grid[str(a)] == choice.accuracy)
    assert choice.extra["aperture"] == first_best  # ties: the first aperture
