from __future__ import annotations

import pytest

from taskvec.tasks import TASKS, get_task
from taskvec.tasks.base import read_pairs, write_task

ALGORITHMIC = ["next_letter", "prev_letter", "list_first", "list_last", "to_upper", "to_lower"]


def test_the_six_algorithmic_tasks_are_built_in():
    assert set(ALGORITHMIC) <= set(TASKS)
    assert {TASKS[name].category for name in ALGORITHMIC} == {"algorithmic"}


@pytest.mark.parametrize(
    ("task", "example_input", "expected"),
    [("next_letter", "a", "b"), ("prev_letter", "b", "a"), ("to_upper", "q", "Q"), ("to_lower", "Q", "q")],
)
def test_letter_tasks_map_as_named(task, example_input, expected):
    pairs = {p.input: p.outputs for p in get_task(task).build(0)}
    assert pairs[example_input] == (expected,)
    assert len(pairs) in (25, 26)


@pytest.mark.parametrize(("task", "position"), [("list_first", 0), ("list_last", -1)])
def test_list_tasks_answer_with_the_right_item(task, position):
    pairs = get_task(task).build(0)
    assert len(pairs) >= 100
    for pair in pairs:
        items = pair.input.strip("[]").split(",")
        assert len(items) == len(set(items)) == 3
        assert pair.outputs == (items[position],)


@pytest.mark.parametrize("task", ALGORITHMIC)
def test_builds_are_deterministic_and_without_duplicates(task, tmp_path):
    write_task(get_task(task), 3, tmp_path / "a.parquet")
    write_task(get_task(task), 3, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    pairs = read_pairs(tmp_path / "a.parquet")
    assert len({p.input for p in pairs}) == len(pairs)
    assert all(p.input and all(o and "\n" not in o for o in p.outputs) for p in pairs)


def test_list_seed_changes_the_lists():
    assert get_task("list_first").build(0) != get_task("list_first").build(1)


def test_unknown_task_names_the_known_ones():
    with pytest.raises(KeyError, match="unknown task 'nope'.*next_letter"):
        get_task("nope")
