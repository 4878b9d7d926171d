"""The scoring rules, table-driven: the paper's first-token rules (exact for algorithmic, linguistic
and translation tasks; prefix either way for knowledge) and the strict metric."""

from __future__ import annotations

import pytest

from taskvec.answers import answer_ended, until_separator
from taskvec.scoring import first_token_correct, strict_correct

CONTINENTS = ("Asia", "Africa")


@pytest.mark.parametrize(
    ("prediction", "answers", "rule", "correct"),
    [
        # knowledge, the paper's rule: a prefix either way, so a one-letter token counts for Asia and Africa
        (" A", ("Asia",), "prefix", True),
        (" A", ("Africa",), "prefix", True),
        ("Par", ("Paris",), "prefix", True),
        ("Paris", ("Paris, France",), "prefix", True),
        ("Paris, France", ("Paris",), "prefix", True),
        ("Lyon", ("Paris",), "prefix", False),
        (" ", ("Paris",), "prefix", False),  # an empty prediction is never a prefix
        ("Par", ("",), "prefix", False),
        # one-token tasks, the paper's rule: the stripped token equals a valid answer
        (" walked", (" walked",), "exact", True),
        ("walked", (" walked",), "exact", True),
        (" walk", (" walked",), "exact", False),
        (" A", ("Asia",), "exact", False),
        (" chien", (" chien", " toutou"), "exact", True),  # any listed translation counts
        (" perro", (" chien",), "exact", False),
    ],
)
def test_the_papers_first_token_rules(prediction, answers, rule, correct):
    assert first_token_correct(prediction, answers, rule) is correct


@pytest.mark.parametrize(
    ("generated", "answers", "correct"),
    [
        (" A", ("Asia", "Africa"), False),  # the strict metric tells Asia from Africa
        (" Asia\nexample:", ("Asia", "Africa"), True),
        (" Africa\n", ("Asia",), False),
        (" pomme de terre\n", ("pomme de terre", "patate"), True),  # a multi-token translation, whole
        (" pomme de table\n", ("pomme de terre", "patate"), False),  # right first token, wrong later token
        (" pomme\n", ("pomme de terre",), False),
        (" walked", (" walked",), True),  # no separator within the token limit: all of it
        (" walked to the", (" walked",), False),
        ("\n walked", (" walked",), False),  # nothing before the separator
    ],
)
def test_the_strict_metric_compares_the_whole_generated_answer(generated, answers, correct):
    assert strict_correct(generated, answers, "\n") is correct


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown scoring rule 'fuzzy'"):
        first_token_correct("a", ("a",), "fuzzy")


@pytest.mark.parametrize(
    ("generated", "separator", "answer", "ended"),
    [
        (" Paris\nexample:", "\n", " Paris", True),
        (" Paris", "\n", " Paris", False),
        ("\n Paris", "\n", "", True),  # an empty answer: the separator came first
        (" Paris example:", " ", " Paris", True),  # a space separator: not the answer's own leading space
        (" Paris", " ", " Paris", False),
        ("   ", " ", "   ", False),
        (" Paris; Rome", "; ", " Paris", True),
    ],
)
def test_generation_stops_exactly_where_the_strict_metric_cuts(generated, separator, answer, ended):
    """One rule for both: a generation is stopped once its answer has ended, and scored up to there."""
    assert until_separator(generated, separator) == answer
    assert answer_ended(generated, separator) is ended
    assert answer_ended(generated, separator) is (until_separator(generated, separator) != generated)


def test_the_stop_rule_and_the_cut_agree_on_every_prefix_of_a_generation():
    """Token by token, the generation stops at the first prefix whose answer has ended; what the
    strict metric then reads is that answer, the same as from any longer generation."""
    for separator in ("\n", " ", " | "):
        text = f" New York{separator}example:{separator}x"
        stops = [i for i in range(1, len(text) + 1) if answer_ended(text[:i], separator)]
        first = stops[0]
        assert until_separator(text[:first], separator) == until_separator(text, separator)
        assert all(until_separator(text[:i], separator) == text[:i] for i in range(1, first))
