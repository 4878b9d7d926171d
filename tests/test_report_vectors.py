"""The function-vector comparison's numbers and sentences, on synthetic tables where the answer is known."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from taskvec.analysis.stats import distribution_gap
from taskvec.methods.pool import random_vectors_like
from taskvec.studies.function_vectors.numbers import (
    mean_with_interval,
    model_metrics,
    paired_difference,
    rank_correlation,
    read_comparison,
    summary_sentences,
)
from taskvec.studies.function_vectors.step import HEAD_SCHEMA, SCHEMA

N = 50


def _rows(task, method, correct, layer=5, n_heads=2, kl=None, split="test"):
    return [
        {
            "task": task,
            "split": split,
            "index": i,
            "method": method,
            "layer": layer,
            "n_heads": n_heads,
            "token_id": 0,
            "prediction": "x",
            "correct": bool(c),
            "kl_from_icl": kl,
            "agrees_with_icl": None if kl is None else bool(c),
        }
        for i, c in enumerate(correct)
    ]


def _table(accuracies: dict[str, dict[str, float]]) -> tuple[pa.Table, pa.Table, dict]:
    rows, heads = [], []
    for t, (task, acc) in enumerate(accuracies.items()):
        for method in (
            "tv",
            "fv",
            "shuffled_icl",
            "shuffled_icl_fv",
            "random_vector",
            "other_task_theta",
            "layer_average",
        ):
            k = round(acc.get(method, 0.0) * N)
            kl = acc.get(f"kl_{method}") if method in ("tv", "fv") else None
            rows += _rows(task, method, [i < k for i in range(N)], kl=kl)
        rows += _rows(task, "fv_curve", [i < 10 for i in range(N)], n_heads=1)
        for layer in range(3):
            for head in range(2):
                heads.append(
                    {
                        "task": task,
                        "layer": layer,
                        "head": head,
                        "aie": float((layer, head) == (2, 1)) + t * 0.01 * head,
                        "clean_probability": 0.1,
                    }
                )
    metadata = {"model_name": "m", "n_heads": 2, "heads": [[2, 1], [2, 0]], "head_prompts": 25}
    return pa.Table.from_pylist(rows, schema=SCHEMA), pa.Table.from_pylist(heads, schema=HEAD_SCHEMA), metadata


def test_accuracies_tests_and_the_sentences_follow_the_numbers():
    tables = _table(
        {
            "a": {"tv": 0.9, "fv": 0.2, "kl_tv": 0.1, "kl_fv": 2.0, "random_vector": 0.0, "layer_average": 0.8},
            "b": {"tv": 0.8, "fv": 0.1, "kl_tv": 0.2, "kl_fv": 2.0},
            "c": {"tv": 0.5, "fv": 0.5, "kl_tv": 1.5, "kl_fv": 1.0},
            "d": {"tv": 0.5, "fv": 0.5, "kl_tv": 1.6, "kl_fv": 1.0},
            "e": {"tv": 0.5, "fv": 0.5, "kl_tv": 1.7, "kl_fv": 1.0},
        }
    )
    c = read_comparison(*tables)
    assert c.tasks["a"].accuracy("tv") == pytest.approx(0.9) and c.tasks["a"].accuracy("fv") == pytest.approx(0.2)
    assert c.tasks["a"].direction == "tv" and c.tasks["c"].direction == "neither"
    assert c.tasks["c"].tv_vs_fv.p_value == 1.0
    assert c.tasks["a"].curve == {1: pytest.approx(0.2), 2: pytest.approx(0.2)}
    assert c.heads == [(2, 1), (2, 0)] and c.shared_heads()[(2, 1)] == 5
    assert c.tasks["a"].kl["tv"] == pytest.approx(0.1)
    icl = {"a": 0.95, "b": 0.9, "c": 0.9, "d": 0.95, "e": 1.0}
    text = " ".join(summary_sentences(c, ["a", "b"], icl, dict.fromkeys("abcde", 0.1)))
    assert "significantly better on 2 (a, b), the function vector on 0 (none), and neither on 3" in text
    assert "task vector reaches 0.85" in text and "function vector of 2 heads 0.15" in text
    assert "the task vector minus the function vector is +0.70 [" in text and "significantly better" in text
    # ICL's lead over TV is 0.05, 0.10, 0.40, 0.45, 0.50 and TV's KL 0.1, 0.2, 1.5, 1.6, 1.7: ranked together
    assert "predicts where the task vector falls short" in text and "is 1.00 (p < 0.001, 5 tasks)" in text
    few = read_comparison(
        *_table(
            {t: tables_spec for t, tables_spec in [("a", {"kl_tv": 0.1}), ("b", {"kl_tv": 0.2}), ("c", {"kl_tv": 0.3})]}
        )
    )
    assert "Spearman" not in " ".join(summary_sentences(few, [], {"a": 0.5, "b": 0.6, "c": 0.7}, {}))


def test_two_methods_on_the_same_prompts_are_compared_by_their_paired_difference():
    """Tasks that differ a lot from each other give wide, overlapping marginal intervals; the task vector
    is right on every prompt the function vector is right on, and on 3 more per task, so the paired
    difference is +0.06 with an interval above 0: the sentence says significantly better."""
    spread = {t: {"tv": fv + 0.06, "fv": fv} for t, fv in zip("abcde", (0.1, 0.3, 0.5, 0.7, 0.9))}
    c = read_comparison(*_table(spread))
    kept = list("abcde")
    (_, tv_ci), (_, fv_ci) = (mean_with_interval(c, kept, m) for m in ("tv", "fv"))
    assert tv_ci[0] < fv_ci[1]  # the marginal intervals overlap
    d, (lo, hi) = paired_difference(c, kept)
    assert d == pytest.approx(0.06) and 0 < lo < d < hi
    text = " ".join(summary_sentences(c, kept, dict.fromkeys(kept, 1.0), dict.fromkeys(kept, 0.0)))
    expected = f"the function vector is +0.06 [{lo:+.2f}, {hi:+.2f}]: the task vector is significantly better"
    assert expected in text
    same = read_comparison(*_table({t: {"tv": 0.5, "fv": 0.5} for t in kept}))
    text = " ".join(summary_sentences(same, kept, dict.fromkeys(kept, 1.0), dict.fromkeys(kept, 0.0)))
    assert "is +0.00 [+0.00, +0.00]: the difference is not significant" in text
    metrics = model_metrics(c, kept, dict.fromkeys(kept, 1.0))["icl_works"]
    assert metrics["tv_minus_fv"] == pytest.approx(0.06) and metrics["tv_minus_fv_ci"] == [round(lo, 4), round(hi, 4)]


def test_a_mean_of_zero_over_tasks_keeps_an_interval_of_its_pooled_prompts():
    c = read_comparison(*_table({t: {"tv": 0.0, "fv": 0.0} for t in "ab"}))
    mean, (lo, hi) = mean_with_interval(c, ["a", "b"], "tv")
    assert mean == 0.0 and lo == 0.0 and hi == pytest.approx(0.0370, abs=1e-3)  # Wilson of 0 in 100


def test_no_task_where_icl_works_and_accuracies_of_zero_and_one():
    c = read_comparison(
        *_table(
            {
                "a": {"tv": 1.0, "fv": 0.0, "kl_tv": 0.0, "kl_fv": 0.0},
                "b": {"tv": 0.0, "fv": 1.0, "kl_tv": 0.0, "kl_fv": 0.0},
            }
        )
    )
    lo, hi = c.tasks["a"].ci("tv")
    assert hi == 1.0 and lo < 1.0  # Wilson: no interval of width 0 at an accuracy of 1
    text = " ".join(summary_sentences(c, [], {"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 0.0}))
    assert "none of the tasks" in text
    assert "significantly better on 1 (a), the function vector on 1 (b)" in text
    assert "Spearman" not in text  # a constant KL has no rank correlation


def test_rank_correlation_on_known_orders():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40])[0] == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1])[0] == pytest.approx(-1.0)
    assert np.isnan(rank_correlation([1, 1, 1], [1, 2, 3])[0])


def test_the_distribution_gap_of_known_distributions():
    p = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    q = np.log(np.array([[0.5, 0.5], [0.1, 0.9]]))
    kl, agree = distribution_gap(p, q)
    assert kl[0] == pytest.approx(0.0, abs=1e-12)
    assert kl[1] == pytest.approx(0.9 * np.log(9) + 0.1 * np.log(1 / 9))
    assert agree.tolist() == [True, False]


def test_the_random_control_has_each_thetas_norm():
    thetas = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32) * np.arange(1, 6)[:, None]
    random = random_vectors_like(thetas, seed=1)
    np.testing.assert_allclose(np.linalg.norm(random, axis=1), np.linalg.norm(thetas, axis=1), rtol=1e-5)
    assert np.abs((random * thetas).sum(axis=1) / np.linalg.norm(thetas, axis=1) ** 2).max() < 0.9
    np.testing.assert_array_equal(random, random_vectors_like(thetas, seed=1))


def test_the_figures_render_deterministically():
    from taskvec.studies.function_vectors.section import aie_heatmap, heads_curve

    c = read_comparison(*_table({"a": {"tv": 0.9, "fv": 0.2}, "b": {"tv": 0.8, "fv": 0.1}}))
    for make in (lambda: aie_heatmap(c), lambda: heads_curve(c, ["a", "b"])):
        first, second = make(), make()
        assert first["png"].startswith(b"\x89PNG") and first["svg"].startswith(b"<?xml") and first == second


def test_the_section_prints_every_task_with_its_intervals_and_tiny_p_values_readably():
    from taskvec.studies.function_vectors.section import aie_heatmap, heads_curve, section_html, table_rows

    c = read_comparison(*_table({"a": {"tv": 0.9, "fv": 0.1}, "b": {"tv": 0.5, "fv": 0.5}}))
    rows = table_rows(c, {"a": 0.9, "b": 0.6}, {"a": 0.0, "b": 0.1})
    assert [r["task"] for r in rows] == ["a", "b"] and rows[0]["tv_ci"] == "[0.79, 0.96]"
    figures = {"aie": aie_heatmap(c), "heads": heads_curve(c, ["a", "b"])}
    html = section_html([(c, rows, ["A sentence."], figures)])
    assert "id='function-vectors'" in html and "A sentence." in html
    assert "< 0.001 (tv)" in html and "1 (neither)" in html  # metrics.json rounds a p of 1e-12 to 0


def test_the_unmatched_contrast_is_said_unmatched_and_a_mean_theta_that_wins_is_a_finding():
    """The section's task vector and function vector saw different information: no ranking. The task's
    mean theta beating the per-prompt task vector on the same prompts is reported as what it is."""
    spread = {t: {"tv": 0.5, "fv": 0.3, "layer_average": 0.7} for t in "abcde"}
    c = read_comparison(*_table(spread))
    kept = list("abcde")
    text = " ".join(summary_sentences(c, kept, dict.fromkeys(kept, 1.0), dict.fromkeys(kept, 0.0)))
    assert "this is no ranking of the methods, which Methods compared makes from one pool" in text
    d, (lo, hi) = paired_difference(c, kept, "layer_average", "tv")
    assert d == pytest.approx(0.2) and lo > 0
    assert f"it scores +0.20 [{lo:+.2f}, {hi:+.2f}] against the per-prompt task vector" in text
    assert "one vector per task beats the vector of each prompt's own demonstrations" in text
    even = read_comparison(*_table({t: {"tv": 0.5, "fv": 0.3, "layer_average": 0.5} for t in kept}))
    assert "no control but a finding" not in " ".join(summary_sentences(even, kept, dict.fromkeys(kept, 1.0), {}))
