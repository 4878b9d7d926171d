"""The methods compared under one protocol (taskvec.studies.methods): the pool never holds a dev or
test query, and the report's numbers (gap closed, paired differences, per-task intervals, costs) are
the formulas' on known rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from taskvec.methods.pool import task_pool
from taskvec.prompts import Prompt
from taskvec.studies.methods.figures import agreement_figure, cost_figure, heatmap_figure
from taskvec.studies.methods.numbers import (
    compared_tasks,
    model_metrics,
    read_methods,
    task_metrics,
)
from taskvec.studies.methods.section import section_html
from taskvec.studies.methods.step import SCHEMA
from taskvec.studies.methods.text import summary_sentences


def _prompt(split, index, query, demos=(("a", "A"),)):
    return Prompt(split, index, demos, query, (query.upper(),), ("z",))


def test_the_pool_draws_only_pairs_that_are_no_dev_or_test_query():
    prompts = [_prompt("dev", 0, "b"), _prompt("test", 0, "c"), _prompt("test", 1, "d"), _prompt("baseline", 0, "e")]
    pairs = [(x, x.upper()) for x in "abcdefghij"]
    sets, kept = task_pool(prompts, pairs, size=4, k=2, dummies=1, seed="pool:0:t")
    assert kept == 7 and len(sets) == 4  # a, e..j: the baseline's bare query may be in the pool
    shown = {x for s in sets for x, _ in s.demonstrations} | {d for s in sets for d in s.dummies}
    assert shown and not shown & {"b", "c", "d"}
    for s in sets:
        assert len(s.demonstrations) == 2 and len(s.dummies) == 1 and all(y == x.upper() for x, y in s.demonstrations)
    again, _ = task_pool(prompts, pairs, size=4, k=2, dummies=1, seed="pool:0:t")
    assert again == sets  # the same seed, the same pool
    none, kept = task_pool(prompts, pairs[:5], size=4, k=2, dummies=1, seed="pool:0:t")
    assert (none, kept) == ([], 2)  # a and e: fewer than one set of 3 needs


TASK_LEVEL = ("task_vector", "mean_difference")


def _comparison(correct: dict[tuple[str, str, str], list[bool]], tasks_without_pool=(), task_level=TASK_LEVEL):
    columns = {name: [] for name in SCHEMA.names}
    for (task, method, control), values in correct.items():
        for index, ok in enumerate(values):
            row = (task, index, method, control, -1, 0.0, 0, "x", ok, ok if not control else None)
            for name, value in zip(SCHEMA.names, row):
                columns[name].append(value)
    tasks = sorted({t for t, _, _ in correct})
    method_record = {
        "extract_positions": 200,
        "choice_positions": 1000,
        "positions_per_query": 5,
        "kl_from_icl": 0.5,
        "configurations": 12,
        "layer": 3,
        "strength": 1.0,
        "dev_accuracy": 0.5,
        "grid": {"1.0": [0.0, 0.5, None, 0.0]},
    }
    metadata = {
        "model_name": "m",
        "k": 5,
        "n_layers": 4,
        "methods": {m: {} for m in task_level},
        "tasks": {
            t: {
                "pool_sets": 0 if t in tasks_without_pool else 10,
                "labelled_examples": 30,
                "dev_queries": 20,
                "icl_positions_per_query": 50,
                "bare_positions_per_query": 5,
                "bare_kl_from_icl": 2.0,
                "tv_per_prompt_positions_per_query": 105,
                "methods": {} if t in tasks_without_pool else {m: dict(method_record) for m in task_level},
            }
            for t in tasks
        },
    }
    return read_methods(pa.table(columns, schema=SCHEMA), metadata)


def _rows(n_right: int, n: int = 10) -> list[bool]:
    return [True] * n_right + [False] * (n - n_right)


def test_gap_closed_paired_differences_costs_and_intervals_follow_their_formulas():
    correct = {}
    for task, (bare, icl, tvp, tv, md) in {"t1": (0, 10, 8, 6, 4), "t2": (2, 8, 6, 5, 5)}.items():
        for method, right in (("bare", bare), ("icl", icl), ("tv_per_prompt", tvp), ("task_vector", tv)):
            correct[task, method, ""] = _rows(right)
        correct[task, "mean_difference", ""] = _rows(md)
        for method in TASK_LEVEL:
            for control in ("random", "other_task", "shuffled_labels"):
                correct[task, method, control] = _rows(1)
    correct["t3", "bare", ""] = _rows(0)  # a task without a pool: per-prompt rows only
    correct["t3", "icl", ""] = _rows(9)
    correct["t3", "tv_per_prompt", ""] = _rows(9)
    comparison = _comparison(correct, tasks_without_pool=("t3",))
    assert comparison.pooled == ["t1", "t2"] and compared_tasks(comparison, ["t1", "t2", "t3"]) == ["t1", "t2"]
    metrics = model_metrics(comparison, ["t1", "t2", "t3"])
    assert metrics["tasks"] == ["t1", "t2"] and metrics["no_pool"] == ["t3"]
    methods = metrics["methods"]
    # means over t1 and t2: bare 0.1, ICL 0.9, task vector 0.55 -> (0.55 - 0.1) / (0.9 - 0.1)
    assert methods["task_vector"]["accuracy"] == pytest.approx(0.55)
    assert methods["task_vector"]["gap_closed"] == pytest.approx(0.45 / 0.8, abs=1e-4)
    assert methods["icl"]["gap_closed"] == 1.0 and methods["bare"]["gap_closed"] == 0.0
    low, high = methods["task_vector"]["gap_closed_ci"]
    assert low < 0.45 / 0.8 < high
    assert methods["task_vector"]["strict"] == pytest.approx(0.55)
    assert methods["task_vector"]["controls"] == {"random": 0.1, "other_task": 0.1, "shuffled_labels": 0.1}
    # costs in k-shot ICL forwards: per query 5 / 50; one-off (200 + 1000) / 50; the per-prompt TV 105 / 50
    assert methods["task_vector"]["per_query_cost"] == pytest.approx(0.1)
    assert methods["task_vector"]["one_off_cost"] == pytest.approx(24.0)
    assert methods["tv_per_prompt"]["per_query_cost"] == pytest.approx(2.1)
    assert methods["icl"]["per_query_cost"] == 1.0 and methods["task_vector"]["labelled_examples"] == 50
    # the per-prompt task vector's layer was chosen on the study's 20 labelled dev prompts: they count
    assert methods["tv_per_prompt"]["labelled_examples"] == 5 + 20 and methods["tv_per_prompt"]["one_off_cost"] is None
    assert (methods["task_vector"]["kl_from_icl"], methods["bare"]["kl_from_icl"]) == (0.5, 2.0)
    assert methods["icl"]["kl_from_icl"] == 0.0 and methods["tv_per_prompt"]["kl_from_icl"] is None  # not measured
    paired = metrics["paired"]
    assert set(paired) == {"tv_per_prompt-icl", "mean_difference-task_vector"}  # never across regimes
    assert paired["mean_difference-task_vector"]["difference"] == pytest.approx(-0.1, abs=0.02)
    assert paired["tv_per_prompt-icl"]["difference"] == pytest.approx(-0.2, abs=0.02)
    per_task = task_metrics(comparison)
    assert per_task["t1"]["methods"]["task_vector"]["accuracy"] == 0.6
    assert per_task["t1"]["methods"]["task_vector/random"]["accuracy"] == 0.1
    low, high = per_task["t1"]["methods"]["task_vector"]["ci"]
    assert low < 0.6 < high
    sentences = " ".join(summary_sentences(comparison, metrics))
    assert "task vector, task level has the highest point estimate of the gap closed" in sentences
    assert "so this ranks nothing" not in sentences  # the reference is paired with every other method
    assert "No pool on t3" in sentences
    assert "found no configuration" not in sentences and "not a ranking" not in sentences  # 12 against 12 tried
    metrics["paired"]["mean_difference-task_vector"]["configurations"] = [5, 30]
    assert "tried 5 and 30 configurations on dev" in " ".join(summary_sentences(comparison, metrics))
    comparison.metadata["tasks"]["t2"]["methods"]["mean_difference"]["grid"] = {"1.0": [0.0, None], "2.0": [0.0, 0.0]}
    sentences = " ".join(summary_sentences(comparison, metrics))
    assert "The mean difference's dev choice found no configuration that answers any dev query on t2" in sentences
    html = section_html([(comparison, metrics, summary_sentences(comparison, metrics), {})], "the protocol")
    gap = methods["task_vector"]["gap_closed"]
    assert "the protocol" in html and f"<td class='num'>{gap:.2f} [" in html and "task vector, task level" in html
    assert cost_figure(comparison, metrics) == cost_figure(comparison, metrics)  # the same bytes
    assert heatmap_figure(comparison)["png"][:4] == b"\x89PNG"


def test_a_trained_method_reports_its_parameters_and_training_and_counts_no_dev_queries():
    """Implicit ICL: its trainable coefficients in the table, its training in a sentence, its labelled
    examples the pool's alone (it chooses nothing on dev), and a dev pass that answers nothing said
    as such (there is no configuration to have chosen)."""
    correct = {}
    for task in ("t1", "t2"):
        for method, right in (("bare", 1), ("icl", 9), ("tv_per_prompt", 7), ("task_vector", 6), ("implicit_icl", 8)):
            correct[task, method, ""] = _rows(right)
    comparison = _comparison(correct, task_level=("task_vector", "implicit_icl"))
    comparison.metadata["methods"]["implicit_icl"]["trainable_parameters"] = 16
    for i, task in enumerate(("t1", "t2")):
        record = comparison.metadata["tasks"][task]["methods"]["implicit_icl"]
        record.update(configurations=1, grid={"1.0": [0.0]})
        record["training"] = {"steps": 200, "examples": 40 + 10 * i, "first_loss": 8.0 + i, "last_loss": 2.0}
    metrics = model_metrics(comparison, ["t1", "t2"])
    entry = metrics["methods"]["implicit_icl"]
    assert entry["trainable_parameters"] == 16 and metrics["methods"]["task_vector"]["trainable_parameters"] == 0
    assert entry["labelled_examples"] == 30 and metrics["methods"]["task_vector"]["labelled_examples"] == 50
    assert entry["training"] == {"steps": 200, "examples": 45, "first_loss": 8.5, "last_loss": 2.0}
    sentences = " ".join(summary_sentences(comparison, metrics))
    # above the task vector, but trained with one configuration: measured, not ranked
    assert "the task vector, task level has the highest point estimate" in sentences
    assert "The implicit ICL trains 16 coefficients for 200 steps on the pool's 45 pairs per task" in sentences
    assert "they take away less of the mapping than they do for the other methods" in sentences
    assert "The implicit ICL answers no dev query on t1 and t2." in sentences
    assert "implicit ICL's dev choice" not in sentences
    assert "tried 1 and 12 configurations on dev" in sentences  # a different budget: not a ranking
    assert "Implicit ICL minus task vector, task level" in sentences  # the label's own capitals kept
    html = section_html([(comparison, metrics, summary_sentences(comparison, metrics), {})], "protocol")
    assert "<td class='num'>16</td>" in html


def test_no_task_where_icl_works_compares_nothing_and_says_so():
    correct = {("t1", m, ""): _rows(1) for m in ("bare", "icl", "tv_per_prompt", *TASK_LEVEL)}
    comparison = _comparison(correct)
    metrics = model_metrics(comparison, [])
    assert "methods" not in metrics and metrics["tasks"] == []
    assert summary_sentences(comparison, metrics) == [
        "No task has both ICL working and a pool on m: nothing is compared."
    ]
    assert cost_figure(comparison, metrics) is None
    np.testing.assert_array_equal(comparison.correct["t1", "icl", ""], _rows(1))


def test_the_meter_counts_block_positions_in_full_forward_units():
    """One forward of a batch counts its padded positions; a pass over the last block alone counts
    1 / n_layers of that."""
    from conftest import tiny_model
    from taskvec.architectures import describe
    from taskvec.forward.batching import encode
    from taskvec.forward.readout import next_tokens
    from taskvec.hooks.meter import Meter

    lm = tiny_model("llama")
    texts = ["example:a->", "example:bcd->"]
    with Meter(lm).on() as meter:
        next_tokens(lm, texts, batch_size=8)
    assert meter.positions == encode(lm, texts).input_ids.numel()
    arch = describe(lm.model)
    hidden = torch.zeros(3, 5, lm.model.config.hidden_size)
    with Meter(lm).on() as meter, torch.inference_mode():
        arch.layers[-1](hidden, position_embeddings=lm.model.model.rotary_emb(hidden, torch.arange(5)[None]))
    assert meter.positions == 15 / arch.n_layers


def test_the_meter_counts_a_differentiated_pass_again_as_backward_work():
    from conftest import tiny_model
    from taskvec.forward.batching import encode
    from taskvec.forward.readout import next_tokens
    from taskvec.hooks.meter import Meter
    from taskvec.methods.heads import attention_heads, head_attribution

    lm = tiny_model("llama")
    texts = ["example:a->", "example:bcd->"]
    heads = attention_heads(lm)
    means = np.zeros((heads.n_layers, heads.n_heads, heads.head_dim), dtype=np.float32)
    with Meter(lm).on() as meter:
        head_attribution(lm, texts, [5, 6], means, batch_size=8)
    assert meter.positions == meter.backward_positions == encode(lm, texts).input_ids.numel()
    with Meter(lm).on() as meter:
        next_tokens(lm, texts, batch_size=8)
    assert meter.backward_positions == 0


def test_head_agreement_is_the_rank_correlation_and_the_recall_of_the_exact_top_heads():
    from taskvec.studies.methods.step import head_agreement

    exact = np.array([[0.5, 0.1], [0.3, -0.2]])
    estimate = np.array([[0.4, 0.35], [0.1, -0.3]])  # ranks 1 2 3 4 against 1 3 2 4
    from taskvec.methods.base import Vectors
    from taskvec.methods.function_vector import HeadVectors

    rows = np.zeros((2, 3), dtype=np.float32)
    exact_vectors = HeadVectors(rows, ((0, 0), (1, 0)), "exact", exact, 4)
    estimate_vectors = HeadVectors(rows, ((0, 0), (0, 1)), "attribution", estimate, 4)
    agreement = head_agreement(exact_vectors, estimate_vectors)
    assert agreement["spearman"] == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    assert agreement["recall"] == 0.5 and agreement["exact_heads"] == [[0, 0], [1, 0]]
    assert agreement["exact_effects"] == exact.tolist() and agreement["prompts"] == 4
    assert head_agreement(None, estimate_vectors) is None and head_agreement(Vectors(rows), estimate_vectors) is None
    flat = HeadVectors(rows, ((0, 0), (1, 0)), "exact", np.zeros((2, 2)), 4)
    assert head_agreement(flat, estimate_vectors)["spearman"] is None  # constant effects have no rank correlation


def test_the_report_gives_the_head_agreement_the_paired_function_vectors_and_backward_costs():
    correct = {}
    for task, (bare, icl, tv, fv, fva) in {"t1": (0, 10, 6, 5, 4), "t2": (2, 8, 5, 5, 5)}.items():
        for method, right in (("bare", bare), ("icl", icl), ("tv_per_prompt", tv), ("task_vector", tv)):
            correct[task, method, ""] = _rows(right)
        correct[task, "function_vector", ""] = _rows(fv)
        correct[task, "function_vector_attribution", ""] = _rows(fva)
    comparison = _comparison(correct)
    names = ("task_vector", "function_vector", "function_vector_attribution")
    comparison.metadata["methods"] = {m: {} for m in names}
    for task, rho in (("t1", 0.6), ("t2", 0.8)):
        record = comparison.metadata["tasks"][task]
        record["methods"] = {m: dict(record["methods"]["task_vector"]) for m in names}
        record["methods"]["function_vector"]["extract_positions"] = 5000
        record["methods"]["function_vector_attribution"].update(extract_positions=300, extract_backward_positions=100)
        record["head_agreement"] = {
            "spearman": rho,
            "recall": 0.5,
            "exact_heads": [[0, 0], [1, 1]],
            "attribution_heads": [[0, 0], [0, 1]],
            "exact_effects": [[0.5, 0.1], [0.3, 0.4]],
            "attribution_effects": [[0.4, 0.3], [0.1, 0.2]],
            "prompts": 10,
        }
    metrics = model_metrics(comparison, ["t1", "t2"])
    agreement = metrics["head_agreement"]
    assert agreement["spearman_mean"] == pytest.approx(0.7) and agreement["recall_mean"] == 0.5
    assert agreement["exact_cost"] == {"forward": 100.0, "backward": 0.0}  # 5000 / 50
    assert agreement["attribution_cost"] == {"forward": 6.0, "backward": 2.0}
    assert metrics["methods"]["function_vector_attribution"]["one_off_backward_cost"] == 2.0
    paired = metrics["paired"]["function_vector_attribution-function_vector"]
    assert paired["difference"] == pytest.approx(-0.05, abs=0.01)
    sentences = " ".join(summary_sentences(comparison, metrics))
    assert "rank correlation with the exact effects over all heads is 0.70 on average" in sentences
    assert "finds 50% of the exact top 2 heads" in sentences
    assert "from 100 ICL forwards to 6 forward and 2 backward" in sentences
    html = section_html([(comparison, metrics, [], {})], "p")
    assert "+ 2 bwd" in html and "function vector, attribution-patching heads" in html
    assert agreement_figure(comparison, metrics)["png"][:4] == b"\x89PNG"
    del metrics["head_agreement"]
    assert agreement_figure(comparison, metrics) is None


def _two_tasks(rights: dict[str, int], controls: dict[tuple[str, str], int] = (), n: int = 10) -> dict:
    """Rows for tasks t1 and t2: each method's number right of ``n``, each (method, control)'s likewise."""
    correct = {}
    for task in ("t1", "t2"):
        for method, right in rights.items():
            correct[task, method, ""] = _rows(right, n)
        for (method, control), right in dict(controls).items():
            correct[task, method, control] = _rows(right, n)
    return correct


def test_a_failed_run_is_named_failed_and_left_out_of_every_contrast_and_ranking():
    """A trained method whose first loss is above a uniform guess over the vocabulary, and a chosen
    method none of whose configurations beats the bare query on dev, are failed runs: named as such
    with the reason, marked in the table, and in no paired contrast and no ranking, though their
    accuracies would have ranked them first."""
    rights = {"bare": 1, "icl": 9, "tv_per_prompt": 7, "task_vector": 5, "mean_difference": 9, "implicit_icl": 9}
    comparison = _comparison(_two_tasks(rights), task_level=("task_vector", "mean_difference", "implicit_icl"))
    comparison.metadata["vocabulary_size"] = 262144
    for task in ("t1", "t2"):
        meta = comparison.metadata["tasks"][task]
        meta["bare_dev_accuracy"] = 0.5  # the grid's best is 0.5: nothing above the bare query
        trained = meta["methods"]["implicit_icl"]
        trained.update(configurations=1, grid={"1.0": [0.9]}, dev_accuracy=0.9)
        trained["training"] = {"steps": 200, "examples": 40, "first_loss": 17.47, "last_loss": 8.35}
        meta["methods"]["task_vector"]["grid"] = {"1.0": [0.6, 0.7, None, 0.2]}  # above 0.5: passes
        meta["methods"]["task_vector"]["dev_accuracy"] = 0.7
    metrics = model_metrics(comparison, ["t1", "t2"])
    assert metrics["failed"] == ["implicit_icl", "mean_difference"]
    gate = metrics["methods"]["implicit_icl"]["gate"]
    assert gate["failed"] and "above a uniform guess over the 262,144 tokens (12.48)" in gate["failed_on"]["t1"]
    assert (
        "none of its 12 configurations scores above the bare query on dev (best 0.50, bare 0.50)"
        in (metrics["methods"]["mean_difference"]["gate"]["failed_on"]["t2"])
    )
    assert metrics["methods"]["task_vector"]["gate"] == {"failed_on": {}, "failed": False}
    assert set(metrics["paired"]) == {"tv_per_prompt-icl"}  # the failed runs in no contrast
    sentences = " ".join(summary_sentences(comparison, metrics))
    assert "The implicit ICL failed on m: its run fails a gate on 2 of the 2 tasks" in sentences
    assert "The mean difference failed on m" in sentences and "no contrast or ranking names it" in sentences
    assert "the task vector, task level has the highest point estimate" in sentences
    html = section_html([(comparison, metrics, summary_sentences(comparison, metrics), {})], "protocol")
    assert html.count("failed on 2 of 2") == 2
    # a trained method that ends below the bare query on dev fails too; one task of two is no failed run
    comparison.metadata["tasks"]["t1"]["methods"]["implicit_icl"]["training"]["first_loss"] = 3.0
    comparison.metadata["tasks"]["t2"]["methods"]["implicit_icl"]["training"]["first_loss"] = 3.0
    comparison.metadata["tasks"]["t1"]["methods"]["implicit_icl"]["dev_accuracy"] = 0.4
    again = model_metrics(comparison, ["t1", "t2"])
    assert again["methods"]["implicit_icl"]["gate"]["failed"] is False and "implicit_icl" not in again["failed"]
    assert "below the bare query's 0.50" in again["methods"]["implicit_icl"]["gate"]["failed_on"]["t1"]
    assert "The implicit ICL's run fails a gate on t1" in " ".join(summary_sentences(comparison, again))


def test_the_label_controls_give_the_share_of_each_gap_that_survives_beside_icls():
    """(control - bare) / (method - bare), for each method and for ICL under the same control, with
    an interval; a sentence says which methods keep more than half their gap without the mapping."""
    rights = {"bare": 4, "icl": 36, "tv_per_prompt": 28, "task_vector": 28, "mean_difference": 28}
    controls = {
        ("icl", "deranged_labels"): 12,  # ICL keeps (12 - 4) / (36 - 4) = 25%
        ("task_vector", "deranged_labels"): 24,  # (24 - 4) / (28 - 4) = 83%
        ("mean_difference", "deranged_labels"): 4,  # 0%
        ("icl", "random_labels"): 20,
        ("task_vector", "random_labels"): 16,
        ("mean_difference", "random_labels"): 16,
    }
    comparison = _comparison(_two_tasks(rights, controls, n=40))
    metrics = model_metrics(comparison, ["t1", "t2"])
    icl = metrics["methods"]["icl"]["answer_space"]["deranged_labels"]
    tv = metrics["methods"]["task_vector"]["answer_space"]["deranged_labels"]
    assert (icl["accuracy"], icl["share"]) == (0.3, 0.25) and tv["share"] == pytest.approx(5 / 6, abs=1e-4)
    assert metrics["methods"]["mean_difference"]["answer_space"]["deranged_labels"]["share"] == 0.0
    assert tv["share_ci"][0] <= tv["share"] <= tv["share_ci"][1]
    assert metrics["methods"]["task_vector"]["answer_space"]["random_labels"]["share"] == 0.5
    assert metrics["methods"]["task_vector"]["controls"]["deranged_labels"] == 0.6
    sentences = " ".join(summary_sentences(comparison, metrics))
    assert "With deranged labels, the share of each gap that survives: ICL 25% [" in sentences
    assert "the task vector, task level 83% [" in sentences
    assert "More than half of the gap survives without the mapping for task vector, task level" in sentences
    assert "as ICL does" not in sentences
    # a method whose own gap is not told apart from 0 has no share: nothing survives of nothing
    rights["mean_difference"] = 5
    controls[("mean_difference", "deranged_labels")] = 5
    flat = model_metrics(_comparison(_two_tasks(rights, controls, n=40)), ["t1", "t2"])
    assert flat["methods"]["mean_difference"]["answer_space"]["deranged_labels"] == {
        "accuracy": 0.125,
        "share": None,
        "share_ci": [None, None],
    }


def test_identical_vectors_get_no_test_and_reference_rows_no_interval():
    """Two head rankings that chose the same heads on every task make one vector: said so, with no
    zero-width interval; the bare query's and ICL's gap closed are 0 and 1 by definition, with none."""
    rights = {"bare": 1, "icl": 9, "tv_per_prompt": 7, "function_vector": 6, "function_vector_attribution": 6}
    pair = ("function_vector", "function_vector_attribution")
    comparison = _comparison(_two_tasks(rights), task_level=pair)
    for task in ("t1", "t2"):
        for method in pair:
            comparison.metadata["tasks"][task]["methods"][method]["heads"] = [[1, 2], [3, 0]]
    metrics = model_metrics(comparison, ["t1", "t2"])
    assert metrics["paired"]["function_vector_attribution-function_vector"]["identical"] is True
    assert metrics["methods"]["bare"]["gap_closed_ci"] == metrics["methods"]["icl"]["gap_closed_ci"] == [None, None]
    sentences = " ".join(summary_sentences(comparison, metrics))
    assert "chose the same heads on every task: the same vector" in sentences
    assert "+0.00 [+0.00, +0.00]" not in sentences
    html = section_html([(comparison, metrics, summary_sentences(comparison, metrics), {})], "protocol")
    assert "<td class='num'>1.00</td>" in html and "1.00 [1.00, 1.00]" not in html
    comparison.metadata["tasks"]["t2"]["methods"]["function_vector"]["heads"] = [[0, 0], [3, 0]]
    other = model_metrics(comparison, ["t1", "t2"])
    assert not other["paired"]["function_vector_attribution-function_vector"]["identical"]
    assert other["paired"]["function_vector_attribution-function_vector"]["same_scores"]  # yet scored alike
    sentences = " ".join(summary_sentences(comparison, other))
    assert "score alike on every test prompt of every task: no difference to test" in sentences


def test_the_cost_figure_tells_task_level_methods_apart_by_what_they_spend_once():
    """One-off cost (backward positions weighted) and labelled examples on the axes; the Pareto
    front over the runs that passed; a failed run drawn but named failed."""
    from taskvec.studies.methods.figures import BACKWARD_WEIGHT, one_off, pareto_front

    assert one_off({"one_off_cost": 10.0, "one_off_backward_cost": 3.0}) == 10.0 + BACKWARD_WEIGHT * 3.0
    assert one_off({}) == 0.0
    assert pareto_front([(5, 0.5), (1, 0.2), (3, 0.6), (2, 0.2), (8, 0.55)]) == [(1, 0.2), (3, 0.6)]
    rights = {"bare": 1, "icl": 9, "tv_per_prompt": 7, "task_vector": 6, "mean_difference": 7}
    comparison = _comparison(_two_tasks(rights))
    metrics = model_metrics(comparison, ["t1", "t2"])
    metrics["failed"] = ["mean_difference"]
    svg = cost_figure(comparison, metrics)["svg"].decode()
    assert "one-off cost per task" in svg and "labelled examples per task" in svg  # both axes
    assert "mean difference (failed)" in svg and "task vector, task level" in svg


def test_the_highest_point_estimate_ranks_nothing_where_no_paired_test_backs_it():
    """Every method is paired with the reference alone: a best method other than the reference has no
    test against the third, and the sentence says so instead of ranking."""
    rights = {"bare": 1, "icl": 9, "tv_per_prompt": 7, "task_vector": 5, "mean_difference": 8, "state_vector": 7}
    comparison = _comparison(_two_tasks(rights), task_level=("task_vector", "mean_difference", "state_vector"))
    sentences = " ".join(summary_sentences(comparison, model_metrics(comparison, ["t1", "t2"])))
    assert "the mean difference has the highest point estimate" in sentences
    assert "no paired test sets it against the state vector" in sentences and "so this ranks nothing" in sentences


def test_a_choice_that_beats_the_bare_query_only_at_another_head_count_passes_its_gate():
    """The gate reads the best of every configuration the choice tried (its dev accuracy), not the
    layer grid alone: a function vector whose grid is at the bare query but whose other head count is
    above it passes."""
    from taskvec.studies.methods.numbers import gate

    rights = {"bare": 1, "icl": 9, "tv_per_prompt": 7, "function_vector": 6}
    comparison = _comparison(_two_tasks(rights), task_level=("function_vector",))
    record = comparison.metadata["tasks"]["t1"]["methods"]["function_vector"]
    comparison.metadata["tasks"]["t1"]["bare_dev_accuracy"] = 0.5
    record.update(grid={"1.0": [0.5, 0.5, 0.5, 0.5]}, dev_accuracy=0.6, configurations=12)
    record.update(chosen={"n_heads": 2}, other_grids={"2": {"1.0": 0.6}})
    assert gate(comparison, "t1", "function_vector") is None
    record["dev_accuracy"] = 0.5
    assert gate(comparison, "t1", "function_vector").startswith("none of its 12 configurations")
