"""How a prediction is scored: the paper's first-token rules and the strict metric, in one place.

The paper's code (Hendel, Geva and Globerson, 2023) reads one predicted token, strips whitespace,
and compares it with the expected answer:

- ``exact``: the stripped token equals a valid answer. Used for algorithmic, linguistic and
  translation tasks, whose pairs are kept only where an answer is one token for the model (so one
  token can be the whole answer).
- ``prefix``: the stripped token and an answer are non-empty and one is a prefix of the other
  (``Par`` for ``Paris``, ``Paris`` for ``Paris, France``). Used for knowledge tasks, whose answers
  are often several tokens. A one-letter token such as ``A`` then counts for both Asia and Africa,
  which is why the strict metric is reported beside it.

The strict metric, for every task: greedy generation until the prompt's separator (or a token
limit); the generated text, stripped, must equal one of the valid answers, multi-token answers
included (every listed translation counts).
"""

from __future__ import annotations

from collections.abc import Sequence

from taskvec.answers import until_separator
from taskvec.errors import ConfigError
from taskvec.tasks.base import FIRST_TOKEN_RULES


def first_token_correct(prediction: str, answers: Sequence[str], rule: str) -> bool:
    """The paper's score of one predicted token against the valid answers."""
    token = prediction.strip()
    stripped = [answer.strip() for answer in answers]
    if rule == "exact":
        return token in stripped
    if rule == "prefix":
        return bool(token) and any(
            answer and (answer.startswith(token) or token.startswith(answer)) for answer in stripped
        )
    raise ConfigError(f"unknown scoring rule {rule!r}; use one of {', '.join(FIRST_TOKEN_RULES)}")


def strict_correct(generated: str, answers: Sequence[str], separator: str = "\n") -> bool:
    """The strict metric: the generation up to the separator, stripped, equals a valid answer."""
    answer = until_separator(generated, separator).strip()
    return bool(answer) and answer in {a.strip() for a in answers}
