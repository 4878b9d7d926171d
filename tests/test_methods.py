"""The vector methods (taskvec.methods) against direct, slow implementations of their formulas: one text
at a time, the residual stream read and changed by plain forward hooks on the blocks, on tiny
random-weight models of every architecture."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from conftest import tiny_model
from taskvec import api, methods
from taskvec.architectures import describe
from taskvec.errors import ArtifactError, ConfigError
from taskvec.forward.capture import last_token_states
from taskvec.forward.patched import patched_next_tokens, patched_sweep
from taskvec.forward.readout import next_tokens
from taskvec.prompts import PromptFormat
from taskvec.tasks.base import Pair

PAIRS = [Pair(c, (c.upper(),)) for c in "abcdefghijklmnopqrstuvwx"]
FMT = PromptFormat()


def _stream(output):
    return output[0] if isinstance(output, tuple) else output


@torch.inference_mode()
def states_by_hand(lm, text: str) -> np.ndarray:
    """The residual stream after every block at the text's last token, ``[n_layers, hidden]``."""
    layers = describe(lm.model).layers
    seen = {}
    handles = [
        block.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, _stream(out)[0, -1].clone()))
        for i, block in enumerate(layers)
    ]
    try:
        lm.model(torch.tensor([lm.tokenizer(text).input_ids]))
    finally:
        for h in handles:
            h.remove()
    return torch.stack([seen[i] for i in range(len(layers))]).float().numpy()


@torch.inference_mode()
def greedy_by_hand(lm, text: str, layer: int, added: np.ndarray | None, steps: int) -> list[int]:
    """Greedy tokens after ``text``, recomputing the whole sequence at each step, with ``added`` added
    to block ``layer``'s output from the text's last position on (the text's last token and every
    generated one)."""
    ids = list(lm.tokenizer(text).input_ids)
    start = len(ids) - 1
    block = describe(lm.model).layers[layer]

    def hook(module, args, output):
        stream = _stream(output)
        stream[0, start:] += torch.as_tensor(added, dtype=stream.dtype)
        return output

    handle = block.register_forward_hook(hook) if added is not None else None
    out = []
    try:
        for _ in range(steps):
            token = int(lm.model(torch.tensor([ids])).logits[0, -1].argmax())
            out.append(token)
            ids.append(token)
    finally:
        if handle is not None:
            handle.remove()
    return out


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


def test_a_vector_file_keeps_its_method_and_strength_and_a_file_from_before_methods_is_theta(tmp_path):
    lm = tiny_model("llama")
    vector = api.task_vector(lm, PAIRS, layer=1, k=3, contexts=1, method="mean_difference", strength=2.5)
    loaded = api.TaskVector.load(vector.save(tmp_path / "v.safetensors"))
    assert (loaded.method.name, loaded.strength, loaded.metadata["site"]) == ("mean_difference", 2.5, "block_output")
    np.testing.assert_array_equal(loaded.vectors, vector.vectors)
    older = {k: v for k, v in vector.metadata.items() if k not in ("method", "strength", "site", "operation")}
    assert api.TaskVector(vector.vectors, 1, older).method.name == "task_vector"


def test_unknown_methods_and_misplaced_strengths_are_refused_before_any_forward_pass(monkeypatch):
    import taskvec.extract

    monkeypatch.setattr(taskvec.extract, "shared_prefix_states", lambda *a, **k: pytest.fail("a forward pass ran"))
    lm = tiny_model("llama")
    with pytest.raises(ConfigError, match="unknown method 'icv'") as error:
        api.task_vector(lm, PAIRS, layer=1, method="icv")
    assert "task_vector, mean_difference" in str(error.value)
    with pytest.raises(ConfigError, match="only a method that adds or turns takes a strength"):
        api.task_vector(lm, PAIRS, layer=1, strength=2.0)
    with pytest.raises(ConfigError, match="layer 1 given for in_context_vector, which goes into every block"):
        api.task_vector(lm, PAIRS, layer=1, method="in_context_vector")


def test_the_command_line_offers_exactly_the_library_methods():
    from taskvec.commands.oneoff import METHOD_NAMES

    assert METHOD_NAMES == tuple(methods.METHODS)


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
            m.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, _stream(out)[0, -1].float().clone()))
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
    got = methods.in_context_vector(tiny_lm, pairs, batch_size=3)
    assert got.shape == (describe(tiny_lm.model).n_layers, tiny_lm.model.config.hidden_size)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    with pytest.raises(ConfigError, match="at least 2 pairs"):
        methods.in_context_vector(tiny_lm, pairs[:1])


def test_pool_pairs_are_each_pair_once_in_the_pools_order():
    from taskvec.prompts import Prompt

    pool = [
        Prompt("dev", 0, (("a", "A"), ("b", "B")), "c", ("C",), ("d",)),
        Prompt("dev", 1, (("b", "B"), ("e", "E")), "f", ("F",), ("g",)),
    ]
    assert methods.pool_pairs(pool) == [("a", "A"), ("b", "B"), ("e", "E")]


@contextlib.contextmanager
def authors_icv_layers(lm, icv: np.ndarray, lam: float):
    """The in-context vector applied as its authors' code does: a layer after every block's MLP turning
    its output at every position, x' = normalize(normalize(x) + lam (1 + relu(cos(x, -v))) normalize(v)) |x|."""

    def layer(v):
        def hook(module, args, output):
            x = _stream(output).float()
            norm = x.norm(dim=-1, keepdim=True)
            lam_sim = 1.0 + torch.clamp(torch.nn.functional.cosine_similarity(x, -v[None, None], dim=-1), min=0.0)
            y = lam * lam_sim[..., None] * torch.nn.functional.normalize(v, dim=-1)
            new = torch.nn.functional.normalize(torch.nn.functional.normalize(x, dim=-1) + y, dim=-1) * norm
            return new.to(_stream(output).dtype) if not isinstance(output, tuple) else (new, *output[1:])

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
        vector.vectors, methods.in_context_vector(tiny_lm, list(dict.fromkeys(pairs))), rtol=1e-5, atol=1e-6
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


@pytest.mark.parametrize("ranking", ["exact", "attribution"])
def test_the_function_vector_is_the_top_heads_mean_outputs_by_their_effect_on_shuffled_prompts(tiny_lm, ranking):
    """The pool's labelled prompts: each head's mean output over them (captured one text at a time),
    its effect with shuffled labels (every head patched in a whole forward for the exact ranking; the
    attribution estimate, itself tested against finite differences, for the other), the top heads'
    outputs summed through the output projection; added after a block, it gives what one hand-written
    hook adding it gives."""
    from taskvec.controls import shuffle_labels
    from taskvec.forward.batching import encode
    from taskvec.function_vectors.heads import (
        attention_heads,
        capture_head_outputs,
        head_attribution,
        head_patch_scan_naive,
        head_vectors,
    )
    from taskvec.function_vectors.vectors import answer_token, top_heads
    from taskvec.prompts import demonstration_sets

    pool = demonstration_sets([(p.input, p.outputs[0]) for p in PAIRS], 3, 2, 3, "pool")
    assert all(p.query == p.dummies[0] and p.answers == (p.query.upper(),) for p in pool)
    name = "function_vector" if ranking == "exact" else "function_vector_attribution"
    details: dict = {}
    vectors = methods.get(name).extract(tiny_lm, pool, FMT, 2, details)

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
    np.testing.assert_allclose(details["average_indirect_effect"], effects, rtol=1e-3, atol=1e-6)
    top = top_heads(effects, max(1, round(heads.n_layers * heads.n_heads * 10 / 448)))
    assert details["heads"] == top
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


def _projection_inputs_by_hand(lm, text: str) -> list[torch.Tensor]:
    """Every block's attention output projection input, ``[positions, width]``, one text alone."""
    from taskvec.function_vectors.heads import attention_heads

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
    got = methods.get(name).extract(tiny_lm, pool, fmt, 2)
    expected = state_vector_by_hand(tiny_lm, pool, fmt, momentum)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_the_state_vector_replaces_the_heads_outputs_up_to_the_chosen_block_by_what_that_gives(tiny_lm):
    """Each L's dev accuracy is what hand-written pre-hooks replacing the last token's projection input
    in blocks 0 to L give, query by query; and the file's vector goes in at the chosen L."""
    from taskvec.evaluate import token_decoder
    from taskvec.function_vectors.heads import attention_heads

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


def test_a_function_vector_given_its_heads_sums_them_without_ranking_any(tiny_lm, monkeypatch):
    """The shuffled-label control: the method's own heads, the pool's mean outputs, no scan."""
    import taskvec.function_vectors.heads as heads_module
    from taskvec.function_vectors.heads import head_vectors, mean_head_outputs
    from taskvec.prompts import demonstration_sets

    pool = demonstration_sets([(p.input, p.outputs[0]) for p in PAIRS], 3, 2, 3, "pool")

    def no_scan(*args, **kwargs):
        raise AssertionError("no head is ranked when the heads are given")

    monkeypatch.setattr(heads_module, "head_patch_scan", no_scan)
    details = {"heads": [(1, 2), (0, 1)]}
    vectors = methods.get("function_vector").extract(tiny_lm, pool, FMT, 2, details)
    means = mean_head_outputs(tiny_lm, [FMT.render(p.demonstrations, p.query) for p in pool])
    expected = head_vectors(tiny_lm, means)[1, 2] + head_vectors(tiny_lm, means)[0, 1]
    np.testing.assert_allclose(vectors[0], expected, rtol=1e-4, atol=1e-5)
    assert (vectors == vectors[0]).all() and details == {"heads": [(1, 2), (0, 1)]}
