"""The paper's six algorithmic tasks, over the lowercase Latin alphabet, generated from a seed."""

from __future__ import annotations

import itertools
import random
import string

from taskvec.tasks.base import Pair, Task

LETTERS = string.ascii_lowercase
LIST_LENGTH = 3
LIST_PAIRS = 300


def _next_letter(seed: int) -> list[Pair]:
    return [Pair(a, (b,)) for a, b in zip(LETTERS, LETTERS[1:])]


def _prev_letter(seed: int) -> list[Pair]:
    return [Pair(b, (a,)) for a, b in zip(LETTERS, LETTERS[1:])]


def _to_upper(seed: int) -> list[Pair]:
    return [Pair(a, (a.upper(),)) for a in LETTERS]


def _to_lower(seed: int) -> list[Pair]:
    return [Pair(a.upper(), (a,)) for a in LETTERS]


def _letter_lists(seed: int) -> list[tuple[str, ...]]:
    """A seeded sample of distinct lists of distinct letters, in a stable order."""
    rng = random.Random(f"letter-lists:{seed}")
    candidates = list(itertools.permutations(LETTERS, LIST_LENGTH))
    return rng.sample(candidates, LIST_PAIRS)


def _format_list(items: tuple[str, ...]) -> str:
    return "[" + ",".join(items) + "]"


def _list_first(seed: int) -> list[Pair]:
    return [Pair(_format_list(items), (items[0],)) for items in _letter_lists(seed)]


def _list_last(seed: int) -> list[Pair]:
    return [Pair(_format_list(items), (items[-1],)) for items in _letter_lists(seed)]


ALGORITHMIC_TASKS = (
    Task("next_letter", "algorithmic", "the letter after the input letter", "a -> b", _next_letter,
         paper_task="next_letter"),
    Task("prev_letter", "algorithmic", "the letter before the input letter", "b -> a", _prev_letter,
         paper_task="prev_letter"),
    Task("list_first", "algorithmic", "the first item of a list of letters", "[a,b,c] -> a", _list_first,
         paper_task="list_first"),
    Task("list_last", "algorithmic", "the last item of a list of letters", "[a,b,c] -> c", _list_last,
         paper_task="list_last"),
    Task("to_upper", "algorithmic", "the input letter in upper case", "a -> A", _to_upper, paper_task="to_upper"),
    Task("to_lower", "algorithmic", "the input letter in lower case", "A -> a", _to_lower, paper_task="to_lower"),
)
