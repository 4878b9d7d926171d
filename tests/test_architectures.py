"""Every supported architecture's adapter, and the intervention record on every site it names: the
site is where the adapter says (the block's output is its input plus what its attention and MLP add),
patching a run's own activation changes nothing (adding zero after scaling by one included), and each
hook fires and changes what it should.

Tiny random-weight models of each architecture: these check mechanics, not claims.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY_CONFIGS, TINY_LAYERS, tiny_model
from taskvec.architectures import ADAPTERS, INPUT_SITES, SITES, UnsupportedArchitecture, describe
from taskvec.forward import generate, patched
from taskvec.forward.batching import encode
from taskvec.hooks.intervention import Intervention, Interventions, intervene

TEXTS = ["example:a->b\nexample:c->", "example:[a,b,c]->", "example:qq->", "xy"]


@pytest.mark.parametrize("model_type", sorted(ADAPTERS))
def test_every_supported_architecture_is_described(model_type):
    lm = tiny_model(model_type)
    arch = describe(lm.model)
    assert arch.model_type == model_type
    assert arch.n_layers == TINY_LAYERS
    assert isinstance(arch.unembedding, torch.nn.Linear)
    assert arch.unembedding.out_features == lm.model.config.vocab_size
    for site in SITES:
        modules = arch.site_modules(site)
        assert len(modules) == TINY_LAYERS and len({id(m) for m in modules}) == TINY_LAYERS


def test_every_supported_architecture_has_a_tiny_model_in_the_equivalence_tests():
    """A supported architecture is one the tests instantiate: the tiny_lm fixture runs every
    equivalence test (capture, patch, padding, sweep, generation, each site's interventions) on each
    of TINY_CONFIGS."""
    assert set(TINY_CONFIGS) == set(ADAPTERS)


def test_unsupported_architecture_lists_the_supported_ones():
    model = torch.nn.Linear(2, 2)
    model.config = type("Config", (), {"model_type": "mamba"})()
    with pytest.raises(UnsupportedArchitecture, match="'mamba' is not supported.*gpt_neox.*llama"):
        describe(model)


def _site_values(lm, site: str, batch) -> list[torch.Tensor]:
    """Each block's value at ``site``, every position, read by hooks of this test's own (the module's
    output; the projection's input at the head site), from one unpatched pass."""
    arch = describe(lm.model)
    values: list[torch.Tensor | None] = [None] * arch.n_layers

    def keep(index: int, module: torch.nn.Module):
        if site in INPUT_SITES:

            def before(module, args, kwargs):
                values[index] = (args[0] if args else next(iter(kwargs.values()))).detach().clone()

            return module.register_forward_pre_hook(before, with_kwargs=True)

        def after(module, args, output):
            values[index] = (output[0] if isinstance(output, tuple) else output).detach().clone()

        return module.register_forward_hook(after)

    handles = [keep(i, module) for i, module in enumerate(arch.site_modules(site))]
    try:
        with torch.inference_mode():
            lm.model(**batch.inputs())
    finally:
        for handle in handles:
            handle.remove()
    return values


def _logits(lm, batch, intervention: Intervention | None = None):
    arch = describe(lm.model)
    with torch.inference_mode():
        if intervention is None:
            return lm.model(**batch.inputs()).logits, None
        with intervene(arch, intervention) as fired:
            return lm.model(**batch.inputs()).logits, fired if isinstance(fired, list) else dict(fired)


def test_the_block_output_is_its_input_plus_what_the_attention_and_mlp_sites_add(tiny_lm):
    """The adapter's attention and MLP sites are the modules whose outputs join the residual stream
    (after their post-norms, where the architecture has them), in sequential and parallel blocks."""
    arch = describe(tiny_lm.model)
    batch = encode(tiny_lm, TEXTS)
    entering: list[torch.Tensor | None] = [None] * arch.n_layers

    def keep(index):
        def hook(module, args, kwargs):
            entering[index] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

        return hook

    handles = [layer.register_forward_pre_hook(keep(i), with_kwargs=True) for i, layer in enumerate(arch.layers)]
    try:
        outputs = _site_values(tiny_lm, "block_output", batch)
    finally:
        for handle in handles:
            handle.remove()
    attention = _site_values(tiny_lm, "attention_output", batch)
    mlp = _site_values(tiny_lm, "mlp_output", batch)
    real = batch.attention_mask.bool()
    for layer in range(arch.n_layers):
        added = (outputs[layer] - entering[layer])[real]
        torch.testing.assert_close(added, (attention[layer] + mlp[layer])[real], atol=1e-4, rtol=1e-4)


def _last_values(values: torch.Tensor, site: str, head: int, head_dim: int) -> torch.Tensor:
    last = values[:, -1, :]
    return last[:, head * head_dim : (head + 1) * head_dim] if site == "head" else last


def _head_dim(lm) -> int:
    from taskvec.methods.heads import attention_heads

    return attention_heads(lm).head_dim


def _heads_width(lm) -> int:
    from taskvec.methods.heads import attention_heads

    heads = attention_heads(lm)
    return heads.n_heads * heads.head_dim


@pytest.mark.parametrize("site", SITES)
def test_patching_a_runs_own_activation_changes_nothing_at_any_site(tiny_lm, site):
    """Identity: each row replaces its own value at a different layer (the sweep's row-wise form), at
    the last position; and adding zero at every position of one layer; the logits are bit for bit
    the unpatched ones, and every hook fired once."""
    batch = encode(tiny_lm, TEXTS)
    clean, _ = _logits(tiny_lm, batch)
    values = _site_values(tiny_lm, site, batch)
    head, head_dim = 1, _head_dim(tiny_lm)
    layers = torch.arange(len(TEXTS)) % TINY_LAYERS
    own = torch.stack([_last_values(values[int(layer)], site, head, head_dim)[row] for row, layer in enumerate(layers)])
    heads = {"heads": head} if site == "head" else {}
    logits, fired = _logits(tiny_lm, batch, Intervention(layers, own, site=site, **heads))
    assert torch.equal(logits, clean)
    assert fired == dict.fromkeys(layers.tolist(), 1)
    width = head_dim if site == "head" else own.shape[-1]
    zero = Intervention(2, torch.zeros(width), site=site, positions="all", operation="add", **heads)
    logits, fired = _logits(tiny_lm, batch, zero)
    assert torch.equal(logits, clean) and fired == {2: 1}
    scaled = Intervention(2, torch.zeros(width), site=site, positions="all", operation="add", scale=1.0, **heads)
    logits, fired = _logits(tiny_lm, batch, scaled)  # implicit ICL's form, scale * x + v, at 1 and 0
    assert torch.equal(logits, clean) and fired == {2: 1}


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("positions", ["last", "all"])
def test_each_sites_hook_fires_and_changes_what_it_patches(tiny_lm, site, positions):
    """Not a silent no-op: adding a vector at a site changes the next-token logits, at the last
    position only (``last``: every earlier position's logits are the unpatched ones) or at every
    position (``all``); the blocks below the patched layer see nothing of it."""
    batch = encode(tiny_lm, ["example:[a,b,c]->"])
    clean, _ = _logits(tiny_lm, batch)
    head_dim = _head_dim(tiny_lm)
    width = {"head": head_dim, "attention_heads": _heads_width(tiny_lm)}.get(
        site, describe(tiny_lm.model).unembedding.in_features
    )
    vector = torch.from_numpy(np.random.default_rng(0).normal(scale=20.0, size=width).astype(np.float32))
    heads = {"heads": 2} if site == "head" else {}
    layer = 1
    intervention = Intervention(layer, vector, site=site, positions=positions, operation="add", **heads)
    before = _site_values(tiny_lm, "block_output", batch)
    logits, fired = _logits(tiny_lm, batch, intervention)
    assert fired == {layer: 1}
    assert not torch.allclose(logits[:, -1], clean[:, -1])
    if positions == "last":
        torch.testing.assert_close(logits[:, :-1], clean[:, :-1])
    else:
        assert all(not torch.allclose(logits[:, i], clean[:, i]) for i in range(logits.shape[1]))
    arch = describe(tiny_lm.model)
    with intervene(arch, intervention):
        after = _site_values(tiny_lm, "block_output", batch)
    torch.testing.assert_close(after[0], before[0])  # below the patched layer
    assert not torch.allclose(after[layer][:, -1], before[layer][:, -1])


def _reference_generation(lm, text, first, n_tokens, layer, theta):
    """Greedy continuation without a cache, the whole sequence again for every token, theta replacing
    block ``layer``'s output at the text's last position and at every generated token."""
    arch = describe(lm.model)
    ids = lm.tokenizer.encode(text)
    end = len(ids) - 1
    generated = [first]

    def patch(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden[0, end:] = torch.as_tensor(theta, dtype=hidden.dtype)
        return output

    handle = arch.layers[layer].register_forward_hook(patch)
    try:
        while len(generated) < n_tokens:
            with torch.inference_mode():
                logits = lm.model(input_ids=torch.tensor([ids + generated])).logits
            generated.append(int(logits[0, -1].argmax()))
    finally:
        handle.remove()
    return generated


def test_an_intervention_on_generated_tokens_patches_each_one_as_it_is_fed_back(tiny_lm):
    """``positions="generated"``: the batched, cached, left-padded generation patches the text's last
    position and every generated token, as a whole recomputation per token does; ``last`` leaves the
    generated tokens alone, and gives a different continuation where the patch matters."""
    texts = TEXTS[:3]
    width = describe(tiny_lm.model).unembedding.in_features
    theta = np.random.default_rng(0).normal(size=width).astype(np.float32) * 100
    first, until = [7, 8, 9], generate.Continuation(5, "\x00")
    on_generated = Intervention(1, theta, positions="generated")
    patched = generate.greedy_continue(tiny_lm, texts, first, until, batch_size=2, intervention=on_generated)
    for i, text in enumerate(texts):
        assert patched[i] == _reference_generation(tiny_lm, text, first[i], 5, 1, theta)


def test_only_the_generated_positions_differ_from_patching_the_last_one():
    """Guards the test above against a patch that both paths ignore (tiny GPT-2 and GPT-J repeat their
    input token whatever the patch, so this uses the tiny Llama)."""
    lm = tiny_model("llama")
    theta = np.random.default_rng(0).normal(size=lm.model.config.hidden_size).astype(np.float32) * 100
    first, until = [7, 8, 9], generate.Continuation(5, "\x00")
    last = generate.greedy_continue(lm, TEXTS[:3], first, until, intervention=Intervention(1, theta))
    every = generate.greedy_continue(
        lm, TEXTS[:3], first, until, intervention=Intervention(1, theta, positions="generated")
    )
    assert last != every


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(layers=0, vectors=np.zeros(4), site="residual"), "unknown site 'residual'"),
        (dict(layers=0, vectors=np.zeros(4), positions="first"), "unknown positions 'first'"),
        (dict(layers=0, vectors=np.zeros(4), operation="scale"), "unknown operation 'scale'"),
        (dict(layers=0, vectors=np.zeros(4), site="head"), "heads is given exactly when"),
        (dict(layers=[0, 1], vectors=np.zeros((3, 4))), "different numbers of rows"),
        (dict(layers=[0.5], vectors=np.zeros(4)), "layers must be integers"),
        (dict(layers=0, vectors=np.zeros(4), scale=2.0), "a scale goes with the add operation"),
    ],
)
def test_an_intervention_that_cannot_be_applied_is_refused_when_it_is_made(arguments, message):
    with pytest.raises(ValueError, match=message):
        Intervention(**arguments)


def test_an_intervention_outside_the_models_blocks_is_refused_and_leaves_no_hook():
    lm = tiny_model("llama")
    arch = describe(lm.model)
    with pytest.raises(ValueError, match=r"layers \[4\] are outside the model's 4 blocks"):
        with intervene(arch, Intervention(4, np.zeros(32))):
            pass
    assert all(not layer._forward_hooks for layer in arch.layers)


@pytest.mark.parametrize("site", SITES)
def test_several_records_in_one_pass_patch_every_layer_and_each_hook_fires(tiny_lm, site):
    """A vector at every layer (as in-context and state vectors write them): each layer's record
    replacing the run's own last-position value changes nothing and fires once; adding a vector at
    every layer gives what one hand-written hook per layer gives."""
    batch = encode(tiny_lm, TEXTS)
    clean, _ = _logits(tiny_lm, batch)
    values = _site_values(tiny_lm, site, batch)
    head, head_dim = 1, _head_dim(tiny_lm)
    heads = {"heads": head} if site == "head" else {}
    own = Interventions(
        tuple(
            Intervention(layer, _last_values(values[layer], site, head, head_dim), site=site, **heads)
            for layer in range(TINY_LAYERS)
        )
    )
    logits, fired = _logits(tiny_lm, batch, own)
    assert torch.equal(logits, clean)
    assert [dict(f) for f in fired] == [{layer: 1} for layer in range(TINY_LAYERS)]

    width = head_dim if site == "head" else values[0].shape[-1]
    rng = np.random.default_rng(1)
    vectors = [torch.from_numpy(rng.normal(scale=5.0, size=width).astype(np.float32)) for _ in range(TINY_LAYERS)]
    added = Interventions(
        tuple(
            Intervention(layer, vectors[layer], site=site, positions="all", operation="add", **heads)
            for layer in range(TINY_LAYERS)
        )
    )
    logits, _ = _logits(tiny_lm, batch, added)
    arch = describe(tiny_lm.model)

    def by_hand(layer):
        def add(tensor):
            if site == "head":
                tensor = tensor.view(*tensor.shape[:-1], -1, head_dim)
                tensor[..., head, :] += vectors[layer]
            else:
                tensor += vectors[layer]

        if site in INPUT_SITES:

            def before(module, args, kwargs):
                z = (args[0] if args else next(iter(kwargs.values()))).clone()
                add(z)
                return ((z, *args[1:]), kwargs) if args else (args, {next(iter(kwargs)): z})

            return arch.site_modules(site)[layer].register_forward_pre_hook(before, with_kwargs=True)

        def after(module, args, output):
            add(output[0] if isinstance(output, tuple) else output)
            return output

        return arch.site_modules(site)[layer].register_forward_hook(after)

    handles = [by_hand(layer) for layer in range(TINY_LAYERS)]
    try:
        with torch.inference_mode():
            expected = tiny_lm.model(**batch.inputs()).logits
    finally:
        for handle in handles:
            handle.remove()
    assert not torch.allclose(expected, clean)
    torch.testing.assert_close(logits, expected)


def test_records_combined_act_as_their_sum_in_every_forward_pass(tiny_lm):
    """Two additive records at one site and layer are one record adding their sum: in next-token
    passes (whole and on the shared prefix), in generation (where only the records on generated
    tokens follow the fed-back tokens), for every row."""
    width = describe(tiny_lm.model).unembedding.in_features
    rng = np.random.default_rng(2)
    u, w = (rng.normal(scale=30.0, size=(len(TEXTS), width)).astype(np.float32) for _ in range(2))
    layers = [1] * len(TEXTS)
    for positions in ("last", "generated", "all"):
        pair = Interventions(
            (
                Intervention(layers, u, positions=positions, operation="add"),
                Intervention(layers, w, positions=positions, operation="add"),
            )
        )
        single = Intervention(layers, u + w, positions=positions, operation="add")
        np.testing.assert_array_equal(
            patched.patched_next_tokens(tiny_lm, TEXTS, pair, batch_size=3),
            patched.patched_next_tokens(tiny_lm, TEXTS, single, batch_size=3),
        )
        variants = patched.next_token_variants(tiny_lm, TEXTS, [pair, single], batch_size=3)
        np.testing.assert_array_equal(variants.tokens[0], variants.tokens[1])
        assert (variants.tokens[0] != variants.plain).any()  # the records do change the prediction
        first, until = [7, 8, 9, 10], generate.Continuation(5, "\x00")
        assert generate.greedy_continue(tiny_lm, TEXTS, first, until, batch_size=3, intervention=pair) == (
            generate.greedy_continue(tiny_lm, TEXTS, first, until, batch_size=3, intervention=single)
        )
    mixed = Interventions((Intervention(1, u[0], positions="last"), Intervention(2, w[0], positions="generated")))
    assert mixed.continuing().records == (mixed.records[1],) and mixed.whole_text is False
    assert Interventions((Intervention(1, u[0]),)).continuing() is None


def test_records_of_different_row_counts_are_refused():
    with pytest.raises(ValueError, match="different numbers of rows"):
        Interventions((Intervention([0, 1], np.zeros((2, 4))), Intervention([0, 1, 2], np.zeros((3, 4)))))
    with pytest.raises(ValueError, match="one Intervention or more"):
        Interventions(())


def test_a_rotation_at_one_blocks_output_gives_the_same_tokens_on_the_shared_prefix_as_a_whole_pass(tiny_lm):
    """The shared-prefix variants' shortcut (feed the patched stream from the next block up) is taken
    only for the operations it computes; a rotation there runs through the record's own hook."""
    width = describe(tiny_lm.model).unembedding.in_features
    vector = np.random.default_rng(4).normal(size=width).astype(np.float32)
    rotation = Intervention(1, vector, operation="rotate")
    whole = patched.patched_next_tokens(tiny_lm, TEXTS, rotation, batch_size=3)
    variants = patched.next_token_variants(tiny_lm, TEXTS, [rotation], batch_size=3)
    np.testing.assert_array_equal(variants.tokens[0], whole)
