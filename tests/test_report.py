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
from taskvec.report import build_report

N_TEST = 50
N_LAYERS = 3
RULES = {"one_token": True, "leading_space": "off", "scoring": "exact"}


def _results(baseline: int, icl: int, tv: int, icl_strict: int, tv_strict: int) -> pa.Table:
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
    for i in range(N_TEST):
        add("test", i, "tv", 1, i < tv, i < tv_strict)
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)


def _metadata(task: str):
    return run_info(
        task,
        RULES,
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
    assert "within the noise on 1" in text
    assert "elsewhere the difference is within the noise" not in text
    assert (
        "synthetic-model, vector_above: task vector 0.90 against ICL 0.20" in text
        and "wrong on 40 of 50 test prompts; the most frequent wrong tokens are 'y' (40); 40 of the wrong tokens "
        "repeat an answer shown in the demonstrations, 0 a demonstration's input, 0 the query"
        in text
    )
    assert "synthetic-model, vector_below: task vector" not in text
    assert (
        "Where the task vector's first token is right but its generation fails the strict metric (15 test prompts "
        "of the first sampling), the generation is a valid answer followed by more text in 15 (100%)"
    ) in text


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
