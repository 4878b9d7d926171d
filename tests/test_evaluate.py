"""The layer choice: computed once from a results table's dev rows, stored with the results file, and
read from there by the scores and by every analysis that patches at the chosen layer."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_info
from taskvec.analysis.robustness import common_layer
from taskvec.errors import ArtifactError
from taskvec.evaluate import (
    RESULT_SCHEMA,
    LayerChoice,
    layer_choice,
    read_layer_choice,
    read_results,
    score,
    write_results,
)


def _table(dev_correct: dict[int, list[bool]], test_layer: int) -> pa.Table:
    rows = []

    def add(split, index, method, layer, correct):
        rows.append(
            {
                "split": split,
                "index": index,
                "query": f"q{index}",
                "method": method,
                "layer": layer,
                "token_id": 1,
                "prediction": "x",
                "correct": correct,
                "generated": None,
                "strict_correct": None,
            }
        )

    for layer, correct in dev_correct.items():
        for index, c in enumerate(correct):
            add("dev", index, "tv", layer, c)
    for index in range(3):
        add("test", index, "icl", -1, True)
        add("test", index, "tv", test_layer, index < 2)
        add("baseline", index, "baseline", -1, False)
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)


DEV = {
    0: [False, False, False, False],
    1: [True, False, True, False],
    2: [True, True, True, False],
    3: [True] * 3 + [False],
}


def test_the_choice_is_the_best_dev_layer_with_ties_to_the_earliest_and_is_stored_with_the_results(tmp_path):
    table = _table(DEV, test_layer=2)
    assert layer_choice(table) == LayerChoice(2, (0.0, 0.5, 0.75, 0.75))
    path = tmp_path / "results.parquet"
    write_results(table, path, run_info("to_upper"))
    assert read_layer_choice(path) == LayerChoice(2, (0.0, 0.5, 0.75, 0.75))
    scores = score(read_results(path)[0])
    assert scores.best_layer == 2 and scores.dev_by_layer == [0.0, 0.5, 0.75, 0.75]
    assert scores.tv == pytest.approx(2 / 3)


def _overwrite_choice(path, choice: LayerChoice) -> None:
    table = pq.read_table(path)
    metadata = json.loads(table.schema.metadata[b"taskvec"])
    metadata["layer_choice"] = choice.to_dict()
    pq.write_table(table.replace_schema_metadata({b"taskvec": json.dumps(metadata).encode()}), path)


def test_consumers_read_the_stored_choice_and_do_not_recompute_it(tmp_path):
    """A stored choice that differs from what the dev rows would give wins: the scores and the
    robustness analysis's common layer follow the file, so that no consumer chooses on its own."""
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_results(_table(DEV, test_layer=1), first, run_info("to_upper"))
    write_results(_table(DEV, test_layer=1), second, run_info("to_lower"))
    for path in (first, second):
        _overwrite_choice(path, LayerChoice(1, (0.0, 0.9, 0.1, 0.1)))
    scores = score(read_results(first)[0])
    assert scores.best_layer == 1 and scores.dev_by_layer == [0.0, 0.9, 0.1, 0.1]
    assert common_layer([first, second]) == 1


def test_a_choice_among_all_zero_accuracies_says_it_found_nothing():
    assert not layer_choice(_table({0: [False] * 4, 1: [False] * 4}, test_layer=0)).found
    assert layer_choice(_table(DEV, test_layer=2)).found


def test_a_results_file_without_a_stored_choice_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "old.parquet"
    table = _table(DEV, test_layer=2)
    metadata = json.dumps(run_info("to_upper").to_dict()).encode()
    pq.write_table(table.replace_schema_metadata({b"taskvec": metadata}), path)
    with pytest.raises(ArtifactError, match="holds no layer choice.*\n  to fix: delete it and make it again"):
        read_layer_choice(path)
