"""The in-context vector (taskvec.methods.in_context_vector) against its authors' code, written out by
hand: the vector, the rotate rule at every MLP output, the strength choice."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from by_hand import FMT, PAIRS, residual

from conftest import tiny_model
from taskvec import api, methods
from taskvec.architectures import describe
from taskvec.errors import ArtifactError, ConfigError
from taskvec.methods.in_context_vector import in_context_vector


@torch.inference_mode()
def icv_by_hand(lm, pairs) -> np.ndarray:
    """The in-context vector as its authors' code computes it: each side alone, batch 1, hooks on the
    embedding module and on every block; the flattened output-minus-input rows; their mean plus the
    first principal direction of the centred rows (scikit-learn's sign rule); the embedding part dropped."""
    arch = describe(lm.model)
    modules = [lm.model.get_input_embeddings(), *arch.layers]

    def last_states(text):
        seen = {}
        handles = [
            m.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, residual(out)[0, -1].float().clone()))
            for i, m in enumerate(modules)
        ]
        try:
            lm.model(torch.tensor([lm.tokenizer.encode(text)]))
        finally:
            for handle in handles:
                handle.remove()
        return torch.cat([seen[i] for i in range(len(modules))])

    rows = torch.stack([last_states(y.strip()) - last_states(x.strip()) for x, y in pairs]).double()
    mean = rows.mean(dim=0)
    u, _, vh = torch.linalg.svd(rows - mean, full_matrices=False)
    first = vh[0] * torch.sign(u[torch.argmax(u[:, 0].abs()), 0])
    return (first + mean).view(len(modules), -1)[1:].float().numpy()


def test_the_in_context_vector_is_its_authors_mean_plus_first_principal_direction(tiny_lm):
    pairs = [(" a", " A"), ("b", "B"), ("[c, d]", "c"), ("qq", " Q")]
    expected = icv_by_hand(tiny_lm, pairs)
    got = in_context_vector(tiny_lm, pairs, batch_size=3)
    assert got.shape == (describe(tiny_lm.model).n_layers, tiny_lm.model.config.hidden_size)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    with pytest.raises(ConfigError, match="at least 2 pairs"):
        in_context_vector(tiny_lm, pairs[:1])


@contextlib.contextmanager
def authors_icv_layers(lm, icv: np.ndarray, lam: float):
    """The in-context vector applied as its authors' code does: a layer after every block's MLP turning
    its output at every position, x' = normalize(normalize(x) + lam (1 + relu(cos(x, -v))) normalize(v)) |x|."""

    def layer(v):
        def hook(module, args, output):
            x = residual(output).float()
            norm = x.norm(dim=-1, keepdim=True)
            lam_sim = 1.0 + torch.clamp(torch.nn.functional.cosine_similarity(x, -v[None, None], dim=-1), min=0.0)
            y = lam * lam_sim[..., None] * torch.nn.functional.normalize(v, dim=-1)
            new = torch.nn.functional.normalize(torch.nn.functional.normalize(x, dim=-1) + y, dim=-1) * norm
            return new.to(residual(output).dtype) if not isinstance(output, tuple) else (new, *output[1:])

        return hook

    modules = describe(lm.model).site_modules("mlp_output")
    handles = [m.register_forward_hook(layer(torch.from_numpy(icv[i]))) for i, m in enumerate(modules)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.inference_mode()
def icv_greedy_by_hand(lm, text: str, icv: np.ndarray, lam: float, steps: int) -> list[int]:
    """Greedy tokens after ``text`` with the authors' layers in place, the whole sequence recomputed
    at every step (so the generated tokens are turned as the prompt's are)."""
    ids = list(lm.tokenizer(text).input_ids)
    out = []
    with authors_icv_layers(lm, icv, lam):
        for _ in range(steps):
            token = int(lm.model(torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(token)
            out.append(token)
    return out


def test_the_in_context_vector_method_chooses_its_strength_by_what_its_authors_layers_give(tiny_lm):
    """`api.task_vector(method="in_context_vector")`: the vector of the contexts' pairs, no block (layer
    -1), the strength of best held-out accuracy, where each strength's accuracy is what the authors'
    layers give text by text; `api.apply` answers as greedy decoding with those layers in place does."""
    vector = api.task_vector(tiny_lm, PAIRS[:16], k=3, contexts=2, method="in_context_vector")  # 4 held out
    choice = vector.metadata["layer_choice"]
    assert vector.layer == -1 and "accuracy_by_layer" not in choice
    pairs = [tuple(d) for c in vector.metadata["contexts"] for d in c["demonstrations"]]
    np.testing.assert_allclose(
        vector.vectors, in_context_vector(tiny_lm, list(dict.fromkeys(pairs))), rtol=1e-5, atol=1e-6
    )
    grid = methods.get("in_context_vector").strengths
    assert choice["configurations"] == len(grid) and set(choice["accuracy_by_strength"]) == {str(s) for s in grid}
    for lam in grid:
        tokens = [
            icv_greedy_by_hand(tiny_lm, FMT.query.format(x=x), vector.vectors, lam, 1)[0] for x in choice["held_out"]
        ]
        right = np.mean(
            [tiny_lm.tokenizer.decode([t]).strip() == x.upper() for t, x in zip(tokens, choice["held_out"])]
        )
        assert choice["accuracy_by_strength"][str(lam)] == [pytest.approx(right)]
    # the layers do change the model's output (on a tiny random model the top token may stay put)
    ids = torch.tensor([tiny_lm.tokenizer(FMT.query.format(x="m")).input_ids])
    with torch.inference_mode():
        clean = tiny_lm.model(ids).logits
        with authors_icv_layers(tiny_lm, vector.vectors, grid[-1]):
            assert not torch.allclose(tiny_lm.model(ids).logits, clean)
    best = max(a[0] for a in choice["accuracy_by_strength"].values())
    assert vector.strength == next(s for s in grid if choice["accuracy_by_strength"][str(s)][0] == best)
    assert choice["accuracy"] == best
    for prediction in api.apply(tiny_lm, vector, list("mn")):
        tokens = icv_greedy_by_hand(
            tiny_lm, FMT.query.format(x=prediction.query), vector.vectors, vector.strength, FMT.max_answer_tokens
        )
        assert prediction.patched_first == tiny_lm.tokenizer.decode(tokens[:1]).strip()
        assert prediction.patched == tiny_lm.tokenizer.decode(tokens).split(FMT.separator)[0].strip()


def test_an_every_block_vector_file_has_no_block_and_no_one_theta(tmp_path):
    lm = tiny_model("gemma3_text")
    vector = api.task_vector(lm, PAIRS, k=3, contexts=1, method="in_context_vector", strength=0.3)
    loaded = api.TaskVector.load(vector.save(tmp_path / "icv.safetensors"))
    assert (loaded.layer, loaded.method.name, loaded.strength) == (-1, "in_context_vector", 0.3)
    assert loaded.metadata["site"] == "mlp_output" and loaded.metadata["operation"] == "rotate"
    with pytest.raises(ConfigError, match="has no one block's theta"):
        _ = loaded.theta
    theta = api.task_vector(lm, PAIRS, layer=1, k=3, contexts=1)
    api.TaskVector(theta.vectors, -1, theta.metadata).save(tmp_path / "bad.safetensors")
    with pytest.raises(ArtifactError, match="with layer -1"):
        api.TaskVector.load(tmp_path / "bad.safetensors")


def test_the_rotate_operation_is_the_in_context_vector_rule_at_every_mlp_output(tiny_lm):
    """The record's ``rotate`` at the MLP output of every block and every position equals the authors'
    layer appended to each MLP: x' = normalize(normalize(x) + lam (1 + relu(cos(x, -v))) normalize(v)) |x|;
    the logits change, and each block's hook fired once."""
    from taskvec.forward.batching import encode
    from taskvec.hooks.intervention import Intervention, Interventions, intervene

    arch = describe(tiny_lm.model)
    rng = np.random.default_rng(3)
    icv = rng.normal(size=(arch.n_layers, tiny_lm.model.config.hidden_size)).astype(np.float32)
    lam = 0.8
    batch = encode(tiny_lm, ["example:a->b\nexample:c->"])

    with torch.inference_mode():
        clean = tiny_lm.model(**batch.inputs()).logits
        with authors_icv_layers(tiny_lm, icv, lam):
            expected = tiny_lm.model(**batch.inputs()).logits
        unit = icv / np.linalg.norm(icv, axis=-1, keepdims=True)
        records = Interventions(
            tuple(
                Intervention(i, lam * unit[i], site="mlp_output", positions="all", operation="rotate")
                for i in range(arch.n_layers)
            )
        )
        with intervene(arch, records) as fired:
            got = tiny_lm.model(**batch.inputs()).logits
    assert not torch.allclose(expected, clean)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert [dict(f) for f in fired] == [{i: 1} for i in range(arch.n_layers)]
