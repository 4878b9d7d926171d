"""Where a generated answer ends: the one rule by which greedy generation stops and the strict
metric cuts (:mod:`taskvec.scoring`)."""

from __future__ import annotations


def answer_end(text: str, separator: str) -> int | None:
    """Where the separator ends the generated answer: its first occurrence; for a separator made of
    spaces only, which the answer's own leading space would match, its first occurrence after the
    answer's first other character. None while the answer has not ended."""
    start = 0
    if not separator.strip(" "):
        start = len(text) - len(text.lstrip())
        if start == len(text):
            return None
    end = text.find(separator, start) if separator else -1
    return None if end < 0 else end


def until_separator(text: str, separator: str) -> str:
    """The generated answer: the text before the separator that ends it (all of it if none does)."""
    end = answer_end(text, separator)
    return text if end is None else text[:end]


def answer_ended(text: str, separator: str) -> bool:
    """Whether a generation has reached the separator that ends its answer (the same rule as
    :func:`until_separator`): generation stops exactly where the strict metric cuts."""
    return answer_end(text, separator) is not None


def answer_token(lm, text: str, answer: str) -> int:
    """The first token of ``answer`` written right after ``text``, as the model's tokenizer (``lm``: a
    :class:`taskvec.models.LoadedModel`) tokenizes the two together (falls back to the answer alone
    where the text's tokens change at the join)."""
    before = lm.tokenizer.encode(text)
    joined = lm.tokenizer.encode(text + answer)
    if joined[: len(before)] == before and len(joined) > len(before):
        return int(joined[len(before)])
    return int(lm.tokenizer.encode(answer, add_special_tokens=False)[0])
