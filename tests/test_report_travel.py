"""The "How far the task vector travels" section on synthetic predictions whose right answers are
known: means, intervals, paired differences and every generated sentence, edge cases included."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest

from taskvec.report.numbers import rounded, signed, spoken_list
from taskvec.studies.travel import numbers as report
from taskvec.studies.travel.step import SCHEMA

N = 20  # prompts per task


def _table(accuracy: dict[tuple[str, str, int, str], float]) -> pa.Table:
    """Rows where the first round(acc * N) prompts (by index, written in reverse) are right."""
    columns = {name: [] for name in SCHEMA.names}
    for (task, experiment, value, method), acc in accuracy.items():
        right = round(acc * N)
        for index in reversed(range(N)):
            row = (task, experiment, value, index, method, -1 if method == "icl" else 3, 0, "x", index < right)
            for name, item in zip(SCHEMA.names, row):
                columns[name].append(item)
    return pa.table(columns, schema=SCHEMA)


def _travel(icl_k, tv_k, tv_m, tasks=("a", "b", "c")) -> report.Travel:
    """``icl_k``/``tv_k``: k -> accuracy (every task alike); ``tv_m``: M -> accuracy."""
    accuracy = {}
    for task in tasks:
        for k in icl_k:
            accuracy[(task, "k", k, "icl")] = icl_k[k]
            accuracy[(task, "k", k, "tv")] = tv_k[k]
        for m in tv_m:
            accuracy[(task, "contexts", m, "tv")] = tv_m[m]
    metadata = {
        "model_name": "toy",
        "layers": {t: 3 for t in tasks},
        "ks": sorted(icl_k),
        "contexts": sorted(tv_m),
        "study_k": [5],
    }
    return report.read_travel(_table(accuracy), metadata)


def test_per_task_accuracies_follow_the_rows_in_prompt_order():
    travel = _travel({1: 0.25, 5: 0.5}, {1: 0.1, 5: 0.4}, {1: 0.4, 4: 0.6})
    task = travel.tasks["b"]
    assert task.layer == 3
    assert task.by_k[5]["icl"].tolist() == [True] * 10 + [False] * 10  # sorted by index
    assert task.accuracy("k", 1, "icl") == 0.25 and task.accuracy("k", 5) == 0.4
    assert task.accuracy("contexts", 4) == 0.6
    low, high = task.ci("k", 1, "icl")
    assert low < 0.25 < high


def test_sentences_state_the_measured_means_and_the_direction_of_each_change():
    travel = _travel({1: 0.0, 2: 0.3, 10: 0.9}, {1: 0.2, 2: 0.2, 10: 0.6}, {1: 0.0, 2: 0.5, 8: 1.0})
    sentences = report.summary_sentences(travel, ["a", "b", "c"])
    # k = 1: ICL is 0 (no share of it can be given), the task vector above it
    assert sentences[0].startswith("Over the 3 tasks where ICL works, with k = 1 demonstrations ICL reaches 0.00")
    assert "the task vector 0.20" in sentences[0] and "(ICL at 0)" in sentences[0]
    assert (
        "with k = 10, ICL 0.90" in sentences[0] and "vector 0.60" in sentences[0] and "(67% of ICL's)" in sentences[0]
    )
    assert "ICL rises (+0.90" in sentences[1] and "the task vector rises (+0.40" in sentences[1]
    assert "the task vector is best at k = 10 (0.60)" in sentences[1]
    assert "layer chosen with k = 5 for every k" in sentences[1]
    # both rise, ICL by 0.90 and the task vector by 0.40: the difference of the changes is itself tested
    assert sentences[2].startswith("Per task, ICL and the task vector change by different amounts")
    assert "a (ICL gains more: ICL 0.00 to 0.90, task vector 0.20 to 0.60)" in sentences[2]
    assert sentences[3].startswith("Averaging theta over 8 demonstration sets instead of 1 helps")
    assert "goes from 0.00 to 1.00 (+1.00 [+1.00, +1.00]" in sentences[3]  # every prompt flips: no spread


def test_no_change_and_a_fall_are_said_as_such():
    same = _travel({1: 0.5, 5: 0.5}, {1: 0.5, 5: 0.5}, {1: 0.5, 2: 0.5})
    sentences = report.summary_sentences(same, ["a", "b", "c"])
    assert "ICL does not change significantly (+0.00" in sentences[1]
    assert "makes no significant difference" in sentences[2]
    falls = _travel({1: 0.9, 5: 0.2}, {1: 0.9, 5: 0.1}, {1: 1.0, 2: 0.0})
    sentences = report.summary_sentences(falls, ["a", "b", "c"])
    assert "ICL falls (-0.70" in sentences[1] and "the task vector falls (-0.80" in sentences[1]
    assert "instead of 1 hurts" in sentences[2]


def test_without_tasks_where_icl_works_no_mean_is_given():
    travel = _travel({1: 0.5, 5: 0.5}, {1: 0.5, 5: 0.5}, {1: 0.5, 2: 0.5})
    assert report.summary_sentences(travel, []) == [
        "ICL beats the baseline by 0.2 on none of the tasks, so no mean is given."
    ]
    assert report.model_metrics(travel, [])["tv_by_k"] == {}


def test_the_mean_over_tasks_has_a_two_level_interval_that_covers_task_differences():
    accuracy = {}
    for task, acc in (("a", 0.2), ("b", 0.5), ("c", 0.8)):
        accuracy[(task, "k", 5, "icl")] = acc
        accuracy[(task, "k", 5, "tv")] = acc
        accuracy[(task, "contexts", 1, "tv")] = acc
    metadata = {"model_name": "toy", "layers": dict.fromkeys("abc", 3), "ks": [5], "contexts": [1], "study_k": [5]}
    travel = report.read_travel(_table(accuracy), metadata)
    mean, (low, high) = travel.curve(["a", "b", "c"], "k")[5]
    assert mean == pytest.approx(0.5)
    assert low < 0.35 and high > 0.65  # tasks resampled: far wider than one task's prompts alone
    numbers = report.model_metrics(travel, ["a", "b", "c"])
    assert numbers["tv_by_k"]["5"]["mean"] == 0.5 and numbers["n_tasks"] == 3


def test_metrics_table_and_html_carry_every_setting():
    travel = _travel({1: 0.25, 5: 0.5}, {1: 0.1, 5: 0.4}, {1: 0.4, 4: 0.6})
    metrics = report.task_metrics(travel)["a"]
    assert metrics["icl_by_k"] == {"1": 0.25, "5": 0.5} and metrics["tv_by_contexts"] == {"1": 0.4, "4": 0.6}
    assert all(lo <= metrics["tv_by_k"][k] <= hi for k, (lo, hi) in metrics["tv_by_k_ci"].items())
    rows = report.table_rows(travel)
    assert rows[0] == {
        "model": "toy", "task": "a", "layer": 3, "icl_k1": 0.25, "tv_k1": 0.1, "icl_k5": 0.5, "tv_k5": 0.4,
        "tv_m1": 0.4, "tv_m4": 0.6,
    }  # fmt: skip
    figures = {"k": {"png": b"k"}, "contexts": {"png": b"m"}}
    html = report.section_html([(travel, rows, report.summary_sentences(travel, ["a"]), figures)])
    assert "<h2 id='travel'>How far the task vector travels</h2>" in html
    assert re.search(r"<td>a</td><td>3</td><td>0.25 / 0.10</td><td>0.50 / 0.40</td><td>0.40</td><td>0.60</td>", html)


def test_the_figures_draw_from_the_numbers():
    travel = _travel({1: 0.25, 5: 0.5}, {1: 0.1, 5: 0.4}, {1: 0.4, 4: 0.6})
    categories = {"a": "algorithmic", "b": "algorithmic", "c": "linguistic"}
    for figure in (report.k_figure(travel, ["a", "b", "c"], categories), report.contexts_figure(travel, ["a"])):
        assert figure["png"].startswith(b"\x89PNG") and b"<svg" in figure["svg"]
    assert np.isclose(report._category_means(travel, ["a", "b", "c"], categories, "tv")["linguistic"][1], 0.4)


def test_a_bound_just_above_zero_does_not_print_as_zero_and_ties_name_every_best_k():
    assert signed(0.0025) == "+0.003" and signed(-0.004) == "-0.004"
    assert signed(0.0) == "+0.00" and signed(0.036) == "+0.04"
    tied = _travel({1: 0.2, 5: 0.8, 10: 0.9}, {1: 0.2, 5: 0.65, 10: 0.65}, {1: 0.5, 2: 0.5})
    assert "the task vector is best at k = 5 and 10 (0.65)" in report.summary_sentences(tied, ["a", "b", "c"])[1]


def test_a_task_vector_that_rises_with_k_where_icl_does_not_is_named_per_task():
    """The two changes are compared by testing their difference itself (prompt by prompt), not by one
    being significant and the other not."""
    travel = _travel({1: 0.45, 10: 0.4}, {1: 0.45, 10: 0.9}, {1: 0.5})
    divergent = travel.k_interaction(["a", "b", "c"], 1, 10)
    assert [(t, m) for t, m, *_ in divergent] == [("a", "tv"), ("b", "tv"), ("c", "tv")]
    sentences = report.summary_sentences(travel, ["a", "b", "c"])
    assert sentences[2] == (
        "Per task, ICL and the task vector change by different amounts from k = 1 to k = 10 (a sign test of the "
        "difference of their changes on the same prompts, Holm-adjusted over the tasks) on "
        "a (the task vector gains more: ICL 0.45 to 0.40, task vector 0.45 to 0.90); "
        "b (the task vector gains more: ICL 0.45 to 0.40, task vector 0.45 to 0.90); "
        "c (the task vector gains more: ICL 0.45 to 0.40, task vector 0.45 to 0.90)."
    )
    together = _travel({1: 0.45, 10: 0.9}, {1: 0.45, 10: 0.9}, {1: 0.5})
    assert together.k_interaction(["a", "b", "c"], 1, 10) == []  # both rise alike
    icl_only = _travel({1: 0.1, 10: 0.9}, {1: 0.3, 10: 0.3}, {1: 0.5})
    assert {m for _, m, *_ in icl_only.k_interaction(["a"], 1, 10)} == {"icl"}
    # one change significant, the other not, by amounts too close to tell apart: no claim
    close = _travel({1: 0.3, 10: 0.7}, {1: 0.3, 10: 0.55}, {1: 0.5})
    assert close.k_interaction(["a"], 1, 10) == []


def test_contrasts_are_bonferroni_adjusted_and_means_at_zero_keep_an_interval():
    travel = _travel({1: 0.0, 10: 0.0}, {1: 0.0, 10: 0.05}, {1: 0.0, 2: 0.0})
    curve = travel.curve(["a", "b", "c"], "k", "icl")
    assert curve[1][0] == 0.0 and curve[1][1][0] == 0.0 and curve[1][1][1] > 0.05  # Wilson of 0 in 60
    from taskvec.analysis.stats import contrast_interval, interval, task_bootstrap

    groups = [[{"high": travel.tasks[t].by_k[10]["tv"], "low": travel.tasks[t].by_k[1]["tv"]}] for t in "abc"]
    draws = task_bootstrap(groups)
    _, (lo, hi) = travel.difference(["a", "b", "c"], "k", 1, 10)
    assert (lo, hi) == contrast_interval(draws["high"] - draws["low"], report.TRAVEL_CONTRASTS)
    assert hi - lo >= np.subtract(*reversed(interval(draws["high"] - draws["low"])))  # wider than unadjusted


def test_the_extended_reports_headline_draws_each_studys_means_from_its_metrics():
    from taskvec.studies.report import headline_figure, headline_panels

    def cell(mean):
        return {"mean": mean, "ci": [mean - 0.1, mean + 0.1]}

    entry = {
        "function_vectors": {"icl_works": {"tv": 0.6, "tv_ci": [0.5, 0.7], "fv": 0.4, "fv_ci": [0.3, 0.5]}},
        "travel": {"icl_by_k": {"1": cell(0.3), "10": cell(0.8)}, "tv_by_k": {"1": cell(0.3), "10": cell(0.6)}},
        "formats": {"tv_own": cell(0.5), "tv_other": cell(0.2)},
    }
    other = entry | {"formats": {"tv_own": cell(0.9), "tv_other": cell(0.7)}}
    panels = dict(headline_panels({"models": {"a": entry, "b": other}}))
    assert [(label, mean) for label, mean, _ in panels["Prompt formats"]["a"]] == [
        ("TV, own format", 0.5),
        ("TV, other formats", 0.2),
    ]
    assert [mean for _, mean, _ in panels["Prompt formats"]["b"]] == [0.9, 0.7]  # each model its own numbers
    assert [mean for _, mean, _ in panels["Demonstrations per prompt"]["b"]] == [0.3, 0.8, 0.3, 0.6]
    vectors = panels["Per-prompt task vector, task-level\nfunction vector (unmatched)"]
    assert vectors["a"][1] == ("function vector", 0.4, [0.3, 0.5])
    first = headline_figure({"models": {"a": entry, "b": entry}})
    assert set(first) == {"png", "svg"} and first == headline_figure({"models": {"a": entry, "b": entry}})
    svg = first["svg"].decode()
    for text in ("function vector (unmatched)", "Demonstrations per prompt", "Prompt formats", "TV, k=10"):
        assert text in svg
    only_formats = headline_figure({"models": {"a": {"formats": entry["formats"]}}})
    assert "Prompt formats" in only_formats["svg"].decode() and "function vector" not in only_formats["svg"].decode()
    assert headline_figure({"models": {"a": {"tasks": {}}}}) is None


def test_every_report_writes_a_metric_and_a_list_of_names_alike():
    assert rounded(0.123456) == 0.1235 and rounded(float("nan")) is None and rounded(None) is None
    assert rounded(np.float64("nan")) is None and rounded(np.float32("nan")) is None and rounded(np.float32(0.5)) == 0.5
    assert spoken_list(["a"]) == "a" and spoken_list(["a", "b"]) == "a and b"
    assert spoken_list(["a", "b", "c"]) == "a, b and c"
