"""The report's generated sentences and intervals, built from synthetic results whose right answer
is known: a task where the task vector is far above ICL, one far below, one equal, and accuracies of
exactly 0 and 1."""

from __future__ import annotations

import html
import json
import re

import pyarrow as pa
import pytest

from conftest import run_info
from taskvec.evaluate import RESULT_SCHEMA, write_results
from taskvec.prompts import Prompt, SplitSizes, write_prompts
from taskvec.report.main import build_report

N_TEST = 50
N_LAYERS = 3
RULES = {"one_token": True, "leading_space": "off", "scoring": "exact"}


def _results(baseline: int, icl: int, tv: int, icl_strict: int, tv_strict: int, test_layer: int = 1) -> pa.Table:
    """A results table: ``baseline`` of 100 bare queries right, ``icl`` and ``tv`` of 50 test prompts
    (the task vector at layer 1, chosen on dev), and the strict scores."""
    rows = []

    def add(split, index, method, layer, correct, strict=None):
        # a generation that fails the strict metric after a right first token goes on after the answer
        generated = None if strict is None else "x" if strict else "x and more" if correct else "y"
        rows.append(
            {
                "split": split,
                "index": index,
                "query": f"q{index % 20}",
                "method": method,
                "layer": layer,
                "token_id": 1,
                "prediction": "x" if correct else "y",
                "correct": correct,
                "generated": generated,
                "strict_correct": strict,
            }
        )

    for i in range(100):
        add("baseline", i, "baseline", -1, i < baseline, i < baseline)
    for i in range(N_TEST):
        add("test", i, "icl", -1, i < icl, i < icl_strict)
    for layer in range(N_LAYERS):
        for i in range(N_TEST):
            add("dev", i, "tv", layer, layer == 1 and i < tv)
    for i in range(N_TEST):  # at the layer dev chooses (the first of a tie where no dev prompt is right)
        add("test", i, "tv", test_layer, i < tv, i < tv_strict)
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)


def _metadata(task: str, rules: dict = RULES):
    return run_info(
        task,
        rules,
        "synthetic-model",
        sizes=SplitSizes(5, 100, N_TEST, N_TEST, 2),
        model={"source": "synthetic"},
        n_layers=N_LAYERS,
        hidden_size=8,
        dtype="float32",
        batch_size=16,
    )


TASKS = {  # baseline, icl, tv, icl strict, tv strict (of 100, 50, 50, 50, 50)
    "vector_above": (0, 10, 45, 10, 40),
    "vector_below": (0, 50, 5, 50, 5),
    "vector_equal": (0, 30, 30, 20, 20),
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    files, prompts = [], []
    for task, counts in TASKS.items():
        # the files name their model and task in their metadata: their paths say nothing
        path = root / "results" / f"r{len(files)}.parquet"
        write_results(_results(*counts), path, _metadata(task))
        files.append(path)
        # every demonstration shows the answer "y", which is what ICL predicts where it is wrong
        test = [Prompt("test", i, (("d", "y"),) * 5, f"q{i % 20}", ("x",), ("e",)) for i in range(N_TEST)]
        prompts.append(root / "prompts" / f"p{len(prompts)}.parquet")
        write_prompts(test, _metadata(task), prompts[-1])
    out = root / "reports"
    build_report(files, out, prompts_files=prompts)
    return out


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page)))


def test_the_summary_names_the_task_above_and_the_task_below_icl(report):
    text = _text((report / "index.html").read_text())
    assert "significantly above ICL on 1 (vector_above)" in text
    assert "significantly below on 1 (vector_below)" in text
    assert "not significantly different on 1 (no test of equivalence)" in text
    assert "elsewhere the difference is within the noise" not in text
    # every demonstration shows "y" and the task's answers are x and y: chance repeats it half the time
    assert (
        "synthetic-model, vector_above: task vector 0.90 against ICL 0.20" in text
        and "wrong on 40 of 50 test prompts; the most frequent wrong tokens are 'y' (40); 40 of the wrong tokens "
        "repeat an answer shown in the demonstrations and 0 a demonstration's input, against 20 and 0 expected of "
        "wrong tokens drawn at random from the task's 2 answers (more than chance gives for answers, about what it "
        "gives for inputs); 0 repeat the query"
        in text
    )
    assert "synthetic-model, vector_below: task vector" not in text
    # exact-scored tasks only: a right first token is the whole answer, so nothing tests "the answer, then more"
    assert (
        "Where the task vector's first token is right but its generation fails the strict metric (15 test prompts "
        "of the first sampling), the generation goes on past the answer: by construction on the exact-scored tasks, "
        "whose first token is the whole answer (15 prompts); no prefix-scored task has such a prompt, so nothing "
        "here tests it."
    ) in text
    assert "followed by more text in" not in text


def test_metrics_record_the_direction_and_holm_adjusted_p(report):
    metrics = json.loads((report / "metrics.json").read_text())["models"]["synthetic-model"]
    tasks = metrics["tasks"]
    assert tasks["vector_above"]["tv_vs_icl"] == "above" and tasks["vector_below"]["tv_vs_icl"] == "below"
    assert tasks["vector_equal"]["tv_vs_icl"] == "within noise"
    for task in tasks.values():
        assert task["tv_vs_icl_p"] <= task["tv_vs_icl_p_holm"] <= 1
    assert metrics["tv_vs_icl_holm"] == {
        "above": ["vector_above"],
        "below": ["vector_below"],
        "within noise": ["vector_equal"],
    }
    assert tasks["vector_above"]["icl_strict"] == 0.2 and tasks["vector_above"]["tv_strict"] == 0.8


def _intervals(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_ci") and isinstance(value, list):
                yield f"{path}.{key}", value
            else:
                yield from _intervals(value, f"{path}.{key}")


def test_no_interval_collapses_at_accuracies_of_0_or_1(report):
    metrics = json.loads((report / "metrics.json").read_text())
    tasks = metrics["models"]["synthetic-model"]["tasks"]
    assert tasks["vector_below"]["icl"] == 1.0 and tasks["vector_above"]["baseline"] == 0.0
    found = list(_intervals(metrics))
    assert len(found) > 20
    for where, (low, high) in found:
        assert low is not None and high is not None and high - low > 0, where
    # the baseline's 100 draws repeat 20 queries: its interval counts 20
    assert tasks["vector_above"]["n_baseline_distinct"] == 20
    assert tasks["vector_above"]["baseline_ci"][1] == pytest.approx(0.1611, abs=1e-3)  # Wilson, 0 of 20


def test_the_committed_study_tells_the_translation_languages_apart():
    """In the committed study's conflicting-tasks table, ICL on en->es scored against the French answers
    is below half of its score against the Spanish answers, by both metrics: the scorer tells the two
    languages apart. And no interval of the committed metrics has width 0."""
    from conftest import ROOT

    metrics = json.loads((ROOT / "reports" / "metrics.json").read_text())
    for model, entry in metrics["models"].items():
        pair = entry["conflicting_tasks"]["translation_en_es/translation_en_fr"]
        assert pair["icl_on_a"] > 0 and pair["icl_on_b"] < pair["icl_on_a"] / 2, model
        assert pair["icl_on_a_strict"] > 0 and pair["icl_on_b_strict"] < pair["icl_on_a_strict"] / 2, model
    for where, (low, high) in _intervals(metrics):
        assert low is not None and high is not None and high - low > 0, where


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """A second study: a prefix-scored task whose strict failures are the answer and more, and a task
    no layer of which beats the bare query (dev accuracy 0 everywhere, baseline 0.3)."""
    root = tmp_path_factory.mktemp("cases")
    tasks = {
        "prefix_scored": ((0, 40, 40, 40, 10, 1), {**RULES, "scoring": "prefix"}),
        "no_layer": ((30, 40, 0, 40, 0, 0), RULES),
    }
    files = []
    prompts = []
    for task, (counts, rules) in tasks.items():
        info = _metadata(task, rules)
        files.append(root / f"r{len(files)}.parquet")
        write_results(_results(*counts), files[-1], info)
        test = [Prompt("test", i, (("d", "y"),) * 5, f"q{i % 20}", ("x",), ("e",)) for i in range(N_TEST)]
        prompts.append(root / f"p{len(prompts)}.parquet")
        write_prompts(test, info, prompts[-1])
    out = root / "reports"
    build_report(files, out, prompts_files=prompts)
    return out


def test_only_prefix_scored_tasks_count_as_evidence_that_generations_go_on_past_the_answer(cases):
    text = _text((cases / "index.html").read_text())
    # the exact-scored task has no strict failure (its task vector is never right); the prefix-scored one has 30
    assert (
        "(30 test prompts of the first sampling), the generation goes on past the answer: by construction on the "
        "exact-scored tasks, whose first token is the whole answer (0 prompts); on the prefix-scored tasks, where a "
        "right first token need not be the whole answer, in 30 of 30 (100%)"
    ) in text
    metrics = json.loads((cases / "metrics.json").read_text())["models"]["synthetic-model"]["tasks"]
    assert metrics["prefix_scored"]["tv_strict_failures_first_sampling"] == {
        "first_token_right_strict_wrong": 30,
        "answer_then_more": 30,
        "scoring": "prefix",
    }


def test_a_sampling_where_no_layer_beats_the_bare_query_reports_no_layer(cases):
    page = (cases / "index.html").read_text()
    assert "<td>none</td>" in page  # the one sampling of no_layer: dev accuracy 0 at every layer, baseline 0.3
    assert re.search(r"<td>1</td>", page)  # prefix_scored's layer 1 beats its bare query (0.8 against 0)
    metrics = json.loads((cases / "metrics.json").read_text())["models"]["synthetic-model"]["tasks"]
    assert metrics["no_layer"]["layers_work"] == [False] and metrics["prefix_scored"]["layers_work"] == [True]


def test_a_conflicting_pair_that_cannot_show_an_override_is_called_uninformative():
    from types import SimpleNamespace

    from taskvec.report.tables import conflict_informative

    def study(tv: float, baseline: float):
        scores = SimpleNamespace(tv=tv, baseline=baseline, n_test=150, n_baseline_distinct=60)
        return SimpleNamespace(get=lambda model, task: SimpleNamespace(scores=scores))

    assert conflict_informative(study(0.8, 0.1), "m", "a", "b", icl_on_a=0.8) == {
        "informative": True,
        "uninformative_because": "",
    }
    # ICL does not do A: the demonstrations set nothing up for theta to override
    assert conflict_informative(study(0.8, 0.1), "m", "a", "b", icl_on_a=0.02) == {
        "informative": False,
        "uninformative_because": "ICL does not do a (0.02)",
    }
    # B's theta does what B's bare query does anyway (0.91 against 0.93): following B proves nothing
    verdict = conflict_informative(study(0.91, 0.93), "m", "a", "b", icl_on_a=0.9)
    assert (
        verdict["informative"] is False
        and "b's theta does no more than its bare query" in verdict["uninformative_because"]
    )
    # above its bare query, but within the noise of two independent samples: still no more than it
    assert conflict_informative(study(0.55, 0.45), "m", "a", "b", icl_on_a=0.9)["informative"] is False
