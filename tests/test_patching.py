"""Residual-stream capture and patching on tiny random models of every supported architecture.

These check mechanics (positions, layers, padding), which random weights exercise as well as real
ones; claims about task vectors are tested on the real model elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import run_info, tiny_model
from taskvec.architectures import describe
from taskvec.forward import batching, capture, generate, patched
from taskvec.forward.batching import encode
from taskvec.forward.capture import last_token_states, shared_prefix_states
from taskvec.forward.patched import (
    SWEEP_PASS_OVERHEAD_BLOCKS,
    patched_sweep,
    patched_sweep_naive,
    sweep_plan,
    task_vector_patch,
)
from taskvec.forward.readout import next_tokens, next_tokens_from_states
from taskvec.hooks.capture import capture_last_token
from taskvec.hooks.intervention import Intervention, intervene

TEXTS = ["example:a->b\nexample:c->", "example:[a,b,c]->", "example:qq->", "x"]

RULES = {"one_token": False, "leading_space": "off", "scoring": "exact"}


def test_capture_equals_output_hidden_states(tiny_lm):
    arch = describe(tiny_lm.model)
    batch = encode(tiny_lm, TEXTS)
    with torch.inference_mode():
        with capture_last_token(arch.layers) as states:
            out = tiny_lm.model(**batch.inputs(), output_hidden_states=True)
        hidden = out.hidden_states
        for layer in range(arch.n_layers - 1):
            torch.testing.assert_close(states[layer], hidden[layer + 1][:, -1])
        # transformers applies the final norm to its last hidden state; the block output is before it.
        normed = arch.final_norm(states[-1])
        torch.testing.assert_close(normed, hidden[-1][:, -1])
        torch.testing.assert_close(arch.logits(states[-1]), out.logits[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", [0, 2])
def test_patch_changes_only_last_position_from_its_layer_on(tiny_lm, layer):
    arch = describe(tiny_lm.model)
    batch = encode(tiny_lm, TEXTS[:3])
    theta = torch.randn(3, tiny_lm.model.config.hidden_size) * 5
    with torch.inference_mode():
        clean = tiny_lm.model(**batch.inputs(), output_hidden_states=True).hidden_states
        with intervene(arch, Intervention(torch.full((3,), layer), theta)):
            patched = tiny_lm.model(**batch.inputs(), output_hidden_states=True).hidden_states
    # hidden_states[i + 1] is block i's output; padding positions (masked out of every real token's
    # attention) are left out: some architectures fill them with whatever their fully masked row gives
    real = batch.attention_mask[:, :-1].bool()
    for block in range(arch.n_layers - 1):
        after, before = patched[block + 1], clean[block + 1]
        torch.testing.assert_close(after[:, :-1][real], before[:, :-1][real])
        if block < layer:
            torch.testing.assert_close(after[:, -1], before[:, -1])
        elif block == layer:
            torch.testing.assert_close(after[:, -1], theta)
        else:
            assert not torch.allclose(after[:, -1], before[:, -1])


def test_hooks_are_removed_even_on_error(tiny_lm):
    arch = describe(tiny_lm.model)
    with pytest.raises(RuntimeError, match="boom"):
        with capture_last_token(arch.layers), intervene(arch, Intervention(torch.tensor([0]), torch.zeros(1, 32))):
            raise RuntimeError("boom")
    assert all(not layer._forward_hooks for layer in arch.layers)


def test_left_padded_batch_matches_one_prompt_at_a_time(tiny_lm):
    together = last_token_states(tiny_lm, TEXTS, batch_size=len(TEXTS))
    alone = np.stack([last_token_states(tiny_lm, [text], batch_size=1)[0] for text in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-4, rtol=1e-4)
    assert np.array_equal(next_tokens(tiny_lm, TEXTS, batch_size=4), next_tokens(tiny_lm, TEXTS, batch_size=1))


def _plan_by_runs(size: int):
    def plan(layers, n_queries, n_layers, balance_rows, unembedding_blocks=1.0):
        ordered = sorted(layers)
        return [ordered[i : i + size] for i in range(0, len(ordered), size)]

    return plan


@pytest.mark.parametrize("run", [256, 3, 1], ids=["all-layers-one-pass", "runs-of-three", "layer-by-layer"])
def test_fast_sweep_matches_naive_patched_forwards(tiny_lm, run, monkeypatch):
    monkeypatch.setattr(patched, "sweep_plan", _plan_by_runs(run))
    queries = TEXTS[:3]
    rng = np.random.default_rng(0)
    n_layers = describe(tiny_lm.model).n_layers
    vectors = rng.normal(scale=3.0, size=(3, n_layers, tiny_lm.model.config.hidden_size)).astype(np.float32)
    fast = patched_sweep(tiny_lm, queries, vectors, batch_size=2)
    naive = patched_sweep_naive(tiny_lm, queries, vectors, batch_size=3)
    assert fast.shape == (3, n_layers)
    assert np.array_equal(fast, naive)
    one_by_one = np.concatenate(
        [patched_sweep(tiny_lm, [q], vectors[i : i + 1], batch_size=1) for i, q in enumerate(queries)]
    )
    assert np.array_equal(fast, one_by_one)


def test_a_sweep_of_some_layers_in_any_order_fills_their_columns(tiny_lm):
    queries = TEXTS[:3]
    n_layers = describe(tiny_lm.model).n_layers
    rng = np.random.default_rng(1)
    vectors = rng.normal(scale=3.0, size=(3, n_layers, tiny_lm.model.config.hidden_size)).astype(np.float32)
    full = patched_sweep(tiny_lm, queries, vectors, batch_size=3)
    some = [n_layers - 1, 0, 2]
    assert np.array_equal(patched_sweep(tiny_lm, queries, vectors, layers=some, batch_size=3), full[:, some])


def _modelled_cost(plan, n_queries, n_layers, balance, unembedding, overhead=SWEEP_PASS_OVERHEAD_BLOCKS):
    return sum(
        (n_layers - (run[0] + 1) + unembedding) * max(n_queries * len(run), balance) + overhead * balance
        for run in plan
    )


def _partitions(items):
    """Every split of ``items`` into runs of neighbours."""
    if not items:
        yield []
        return
    for cut in range(1, len(items) + 1):
        for rest in _partitions(items[cut:]):
            yield [items[:cut], *rest]


@pytest.mark.parametrize(
    ("n_queries", "n_layers", "balance", "unembedding"),
    [(50, 8, 320, 1.0), (3, 9, 256, 8.0), (64, 6, 1, 0.5), (7, 10, 10_000, 30.0)],
)
def test_the_sweep_plan_is_the_cheapest_split_into_runs_of_layers(n_queries, n_layers, balance, unembedding):
    """Against every possible split, found by enumeration on small cases: the dynamic programme finds
    the least modelled time, and covers each layer once, in ascending runs."""
    layers = list(range(n_layers))
    plan = sweep_plan(layers[::-1], n_queries, n_layers, balance, unembedding)
    assert [layer for run in plan for layer in run] == layers
    best = min(_modelled_cost(p, n_queries, n_layers, balance, unembedding) for p in _partitions(layers))
    assert _modelled_cost(plan, n_queries, n_layers, balance, unembedding) == pytest.approx(best)


def test_the_sweep_plan_trades_wasted_blocks_against_weight_reads():
    # Weight reads free (balance 1): one layer per pass wastes no block.
    assert all(len(run) == 1 for run in sweep_plan(range(12), 50, 12, 1, 1.0, 0.0))
    # Passes that cost the same up to 10 000 rows: every layer in one pass.
    assert sweep_plan(range(12), 50, 12, 10_000, 1.0) == [list(range(12))]
    # A GPU-like balance (320 rows) with 50 queries: runs of a few layers, about 320 rows each.
    runs = sweep_plan(range(32), 50, 32, 320, 1.0)
    assert 1 < len(runs) < 32 and all(4 <= len(run) <= 10 for run in runs)


def test_padding_to_the_gpu_width_multiple_changes_no_result(tiny_lm, monkeypatch):
    """On a GPU batches are padded to a multiple of 8 columns; run here with that setting, every step
    gives what it gives unpadded."""
    n_layers = describe(tiny_lm.model).n_layers
    vectors = np.random.default_rng(2).normal(size=(3, n_layers, tiny_lm.model.config.hidden_size)).astype(np.float32)
    plain = (
        last_token_states(tiny_lm, TEXTS, batch_size=4),
        next_tokens(tiny_lm, TEXTS, batch_size=4),
        shared_prefix_states(tiny_lm, GROUPS, batch_size=2),
        patched_sweep(tiny_lm, TEXTS[:3], vectors, batch_size=3),
    )
    monkeypatch.setitem(batching.PAD_MULTIPLE, "cpu", 8)
    width = encode(tiny_lm, ["x", "example:a->b"]).input_ids.shape[1]
    longest = len(tiny_lm.tokenizer.encode("example:a->b"))
    # A sliding window counts padded columns too, so models with one are never padded wider.
    assert width == (longest if batching.min_sliding_window(tiny_lm) else -(-longest // 8) * 8)
    padded = (
        last_token_states(tiny_lm, TEXTS, batch_size=4),
        next_tokens(tiny_lm, TEXTS, batch_size=4),
        shared_prefix_states(tiny_lm, GROUPS, batch_size=2),
        patched_sweep(tiny_lm, TEXTS[:3], vectors, batch_size=3),
    )
    np.testing.assert_allclose(padded[0], plain[0], atol=1e-4, rtol=1e-4)
    assert np.array_equal(padded[1], plain[1])
    np.testing.assert_allclose(padded[2], plain[2], atol=1e-4, rtol=1e-4)
    assert np.array_equal(padded[3], plain[3])


def test_sweep_with_the_clean_state_reproduces_the_unpatched_prediction(tiny_lm):
    """Patching a prompt's own block output back in is a no-op at every layer."""
    states = last_token_states(tiny_lm, TEXTS[:3])
    sweep = patched_sweep(tiny_lm, TEXTS[:3], states)
    plain = next_tokens(tiny_lm, TEXTS[:3])
    assert np.array_equal(sweep, np.repeat(plain[:, None], sweep.shape[1], axis=1))


GROUPS = [
    ["example:a->b\nexample:c->", "example:a->b\nexample:dd->"],
    ["example:[a,b,c]->a\nexample:[x,y,z]->x\nexample:q->", "example:[a,b,c]->a\nexample:[x,y,z]->x\nexample:r->"],
    ["p", "q"],
]


@pytest.mark.parametrize("pass_overhead", [0, 64], ids=["suffix-pass-per-length", "one-suffix-pass"])
def test_shared_prefix_states_equal_running_each_text_alone(tiny_lm, pass_overhead, monkeypatch):
    """Suffixes run in passes of similar length (each with its rows of the prefix cache); with no cost
    per pass every distinct length gets its own pass."""
    monkeypatch.setattr(capture, "PASS_OVERHEAD_TOKENS", pass_overhead)
    shared = shared_prefix_states(tiny_lm, GROUPS, batch_size=2)
    alone = np.stack([last_token_states(tiny_lm, group, batch_size=1) for group in GROUPS])
    np.testing.assert_allclose(shared, alone, atol=1e-4, rtol=1e-4)


def test_shared_prefix_states_within_a_sliding_window(monkeypatch):
    """Gemma 3 interleaves sliding-window layers; prompts shorter than the window share the prefix."""
    lm = tiny_model("gemma3_text", sliding_window=128)
    monkeypatch.setattr(capture, "PASS_OVERHEAD_TOKENS", 0)
    shared = shared_prefix_states(lm, GROUPS, batch_size=3)
    alone = np.stack([last_token_states(lm, group, batch_size=1) for group in GROUPS])
    np.testing.assert_allclose(shared, alone, atol=1e-4, rtol=1e-4)


def test_icl_prediction_from_the_shared_prefix_equals_a_full_forward(tiny_lm):
    """The study reads ICL predictions off the last suffix of the shared-prefix pass (final norm and
    unembedding applied to the last block's state): they must equal a plain forward of each prompt."""
    states = shared_prefix_states(tiny_lm, GROUPS, batch_size=2)
    from_states = next_tokens_from_states(tiny_lm, states[:, -1, -1])
    assert np.array_equal(from_states, next_tokens(tiny_lm, [group[-1] for group in GROUPS], batch_size=1))


def test_the_benchmarked_workload_floor_counts_no_more_work_than_the_study_does(tmp_path):
    """`taskvec bench` divides the workload's least FLOPs by the machine's best matrix rate and reports
    that as a floor no implementation beats: the count must be a lower bound of the block and
    unembedding work that run_task really does (counted with hooks), and close to it."""
    from taskvec.bench.flops import parameter_count, workload_flops
    from taskvec.jobs.evaluation import run_task
    from taskvec.prompts import PromptFormat, SplitSizes, sample_prompts, write_prompts
    from taskvec.tasks import get_task

    lm = tiny_model("llama")
    fmt = PromptFormat()
    prompts = sample_prompts(get_task("to_upper").build(0), SplitSizes(k=3, baseline=8, dev=6, test=6), seed=0)
    path = tmp_path / "prompts.parquet"
    write_prompts(prompts, run_info("to_upper", RULES), path)
    arch = describe(lm.model)
    counted = {"block_tokens": 0, "readouts": 0}

    def count(key):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            counted[key] += hidden.shape[0] * hidden.shape[1]

        return hook

    handles = [layer.register_forward_pre_hook(count("block_tokens"), with_kwargs=True) for layer in arch.layers]
    handles.append(arch.unembedding.register_forward_pre_hook(count("readouts"), with_kwargs=True))
    try:
        run_task(lm, prompts, fmt, batch_size=4)
    finally:
        for handle in handles:
            handle.remove()
    done = (
        counted["block_tokens"] * 2 * parameter_count(arch.layers[0])
        + counted["readouts"] * 2 * arch.unembedding.weight.numel()
    )
    least = workload_flops(lm, [path])
    assert least <= done <= 1.25 * least, (least, done)


def _reference_continuation(lm, text, first, n_tokens, layer=None, theta=None):
    """Greedy continuation one text at a time without a cache: the whole sequence runs again for every
    token, with theta replacing the block output at the text's last position."""
    arch = describe(lm.model)
    ids = lm.tokenizer.encode(text)
    end = len(ids) - 1
    generated = [first]
    while len(generated) < n_tokens:
        tokens = torch.tensor([ids + generated])
        with torch.inference_mode():
            hooks = []
            if layer is not None:

                def patch(module, args, output):
                    hidden = output[0] if isinstance(output, tuple) else output
                    hidden[0, end] = torch.as_tensor(theta, dtype=hidden.dtype)
                    return output

                hooks.append(arch.layers[layer].register_forward_hook(patch))
            try:
                logits = lm.model(input_ids=tokens).logits
            finally:
                for hook in hooks:
                    hook.remove()
        generated.append(int(logits[0, -1].argmax()))
    return generated


def test_greedy_continuation_equals_full_recomputation(tiny_lm):
    """The strict metric's batched, left-padded, cached generation (patched or not) produces what
    running each text alone, whole, for every new token produces."""
    texts = TEXTS[:3]
    n_tokens = 5
    first = [7, 8, 9]
    hidden = tiny_lm.model.config.hidden_size
    thetas = np.random.default_rng(0).normal(size=(len(texts), hidden)).astype(np.float32) * 100
    layers = [0, 2, 1]
    until = generate.Continuation(n_tokens, "\x00")
    plain = generate.greedy_continue(tiny_lm, texts, first, until, batch_size=2)
    patched = generate.greedy_continue(
        tiny_lm, texts, first, until, batch_size=3, intervention=task_vector_patch(layers, thetas)
    )
    for i, text in enumerate(texts):
        assert plain[i] == _reference_continuation(tiny_lm, text, first[i], n_tokens)
        assert patched[i] == _reference_continuation(tiny_lm, text, first[i], n_tokens, layers[i], thetas[i])


def test_a_patched_continuation_differs_from_the_plain_one():
    """Guards the test above against a patch that both paths ignore (tiny GPT-2 and GPT-J repeat their
    input token whatever the patch, so this uses the tiny Llama)."""
    lm = tiny_model("llama")
    thetas = np.random.default_rng(0).normal(size=(3, lm.model.config.hidden_size)).astype(np.float32) * 100
    plain = generate.greedy_continue(lm, TEXTS[:3], [7, 8, 9], generate.Continuation(5, "\x00"))
    patched = generate.greedy_continue(
        lm,
        TEXTS[:3],
        [7, 8, 9],
        generate.Continuation(5, "\x00"),
        intervention=task_vector_patch([0, 2, 1], thetas),
    )
    assert plain != patched
    assert patched[1] == _reference_continuation(lm, TEXTS[1], 8, 5, 2, thetas[1])


def test_greedy_continuation_stops_at_the_separator():
    lm = tiny_model("llama")
    newline = lm.tokenizer.convert_tokens_to_ids("\n")
    generated = generate.greedy_continue(lm, TEXTS[:2], [newline, 7], generate.Continuation(6, "\n"), batch_size=2)
    assert generated[0] == [newline]
    assert len(generated[1]) == 6 or "\n" in lm.tokenizer.decode(generated[1])


def test_the_icl_generation_on_the_shared_prefix_equals_generating_from_the_whole_prompt(tiny_lm):
    """Extraction continues each group's last text (the ICL prompt) on the cache of the shared prefix
    and its suffix; that must generate what the whole prompt generates alone, and start with the
    prompt's own next token."""
    groups = [
        ["example:a->b\nexample:c->d\nexample:e->", "example:a->b\nexample:c->d\nexample:qq->"],
        ["example:x->y\nexample:[a,b]->", "example:x->y\nexample:z->"],
        ["ab", "abc"],
    ]
    until = generate.Continuation(4, "\x00")
    states, generated = shared_prefix_states(tiny_lm, groups, batch_size=2, continue_last=until)
    np.testing.assert_allclose(states, shared_prefix_states(tiny_lm, groups, batch_size=2))
    last = [group[-1] for group in groups]
    first = next_tokens(tiny_lm, last, batch_size=1)
    assert [ids[0] for ids in generated] == first.tolist()
    assert generated == generate.greedy_continue(tiny_lm, last, first.tolist(), until, batch_size=1)


def test_a_generation_stops_once_it_cannot_become_an_answer_and_scores_the_same():
    from taskvec.scoring import strict_correct

    lm = tiny_model("llama")
    until = generate.Continuation(6, "\x00")
    full = generate.greedy_continue(lm, TEXTS[:3], [7, 8, 9], until)
    texts = [lm.tokenizer.decode(ids) for ids in full]
    reachable = [[texts[0]], [texts[1][:3] + "?"], ["zzz"]]  # the whole, a wrong turn at the 4th character, none
    stopped = generate.greedy_continue(lm, TEXTS[:3], [7, 8, 9], until, answers=reachable)
    assert stopped[0] == full[0]
    assert full[1][: len(stopped[1])] == stopped[1] and len(stopped[1]) < len(full[1])
    assert stopped[2] == full[2][:1]
    for answers, whole, short in zip(reachable, full, stopped):
        assert strict_correct(lm.tokenizer.decode(short), answers, "\x00") == strict_correct(
            lm.tokenizer.decode(whole), answers, "\x00"
        )


def test_the_layer_skip_leaves_the_blocks_in_place_and_restores_them_even_on_error(tiny_lm):
    """The model's own loop may read attributes of its blocks: skipping blocks must not swap them out."""
    from taskvec.hooks.patch import start_at_layer

    arch = describe(tiny_lm.model)
    blocks = list(arch.layers)
    theta = torch.zeros(1, tiny_lm.model.config.hidden_size)
    with start_at_layer(arch.layers, arch.final_norm, 2, theta):
        assert list(arch.layers) == blocks
        assert ["forward" in block.__dict__ for block in blocks] == [True, True] + [False] * (len(blocks) - 2)
    with pytest.raises(RuntimeError, match="boom"), start_at_layer(arch.layers, arch.final_norm, 3, theta):
        raise RuntimeError("boom")
    assert list(arch.layers) == blocks and not any("forward" in block.__dict__ for block in blocks)
    assert not arch.layers[3]._forward_pre_hooks
