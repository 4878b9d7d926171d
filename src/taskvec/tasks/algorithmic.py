"""The paper's six algorithmic tasks, over the Latin alphabet, as its code generates them.

Letters: next letter over a-y, previous letter over b-z, to upper over a-z, to lower over A-Z. Lists:
``a,b,c`` (comma, no brackets), a length drawn uniformly from 2 to 4, then that many lowercase letters
drawn with replacement; inputs are distinct.
"""

from __future__ import annotations

import random
import string

from taskvec.tasks.base import ALGORITHMIC_RULES, Pair, Task

LETTERS = string.ascii_lowercase
LIST_LENGTHS = (2, 3, 4)
LIST_SEPARATOR = ","
LIST_PAIRS = 1000


def _next_letter(seed: int) -> list[Pair]:
    return [Pair(a, (b,)) for a, b in zip(LETTERS, LETTERS[1:])]


def _prev_letter(seed: int) -> list[Pair]:
    return [Pair(b, (a,)) for a, b in zip(LETTERS, LETTERS[1:])]


def _to_upper(seed: int) -> list[Pair]:
    return [Pair(a, (a.upper(),)) for a in LETTERS]


def _to_lower(seed: int) -> list[Pair]:
    return [Pair(a.upper(), (a,)) for a in LETTERS]


def _letter_lists(seed: int) -> list[tuple[str, ...]]:
    """A seeded pool of distinct lists, drawn as the paper's code draws one: a length uniformly from
    ``LIST_LENGTHS``, then letters with replacement."""
    rng = random.Random(f"letter-lists:{seed}")
    lists: dict[tuple[str, ...], None] = {}
    while len(lists) < LIST_PAIRS:
        length = rng.choice(LIST_LENGTHS)
        lists.setdefault(tuple(rng.choice(LETTERS) for _ in range(length)))
    return list(lists)


def _format_list(items: tuple[str, ...]) -> str:
    return LIST_SEPARATOR.join(items)


def _list_first(seed: int) -> list[Pair]:
    return [Pair(_format_list(items), (items[0],)) for items in _letter_lists(seed)]


def _list_last(seed: int) -> list[Pair]:
    return [Pair(_format_list(items), (items[-1],)) for items in _letter_lists(seed)]


SAME_AS_PAPER = "None: the same inputs, format and scoring as the paper's code."
LIST_DIFFERS = (
    f"Format as the paper (a,b,c; 2-4 letters with replacement). The paper draws each prompt's lists "
    f"afresh; here they come from a seeded pool of {LIST_PAIRS} distinct lists."
)

ALGORITHMIC_TASKS = (
    Task(
        "next_letter",
        "algorithmic",
        "the letter after the input letter",
        "a -> b",
        _next_letter,
        ALGORITHMIC_RULES,
        paper_task="next_letter",
        differs=SAME_AS_PAPER,
    ),
    Task(
        "prev_letter",
        "algorithmic",
        "the letter before the input letter",
        "b -> a",
        _prev_letter,
        ALGORITHMIC_RULES,
        paper_task="prev_letter",
        differs=SAME_AS_PAPER,
    ),
    Task(
        "list_first",
        "algorithmic",
        "the first item of a list of letters",
        "a,b,c -> a",
        _list_first,
        ALGORITHMIC_RULES,
        paper_task="list_first",
        differs=LIST_DIFFERS,
    ),
    Task(
        "list_last",
        "algorithmic",
        "the last item of a list of letters",
        "a,b,c -> c",
        _list_last,
        ALGORITHMIC_RULES,
        paper_task="list_last",
        differs=LIST_DIFFERS,
    ),
    Task(
        "to_upper",
        "algorithmic",
        "the input letter in upper case",
        "a -> A",
        _to_upper,
        ALGORITHMIC_RULES,
        paper_task="to_upper",
        differs=SAME_AS_PAPER,
    ),
    Task(
        "to_lower",
        "algorithmic",
        "the input letter in lower case",
        "A -> a",
        _to_lower,
        ALGORITHMIC_RULES,
        paper_task="to_lower",
        differs=SAME_AS_PAPER,
    ),
)
