"""The paper's analyses beyond the main table: statistics, conflicting tasks, robustness of theta,
and its projection onto the vocabulary."""

from __future__ import annotations

from taskvec.errors import ArtifactError


def one_model(names: set[str]) -> str:
    """The model an analysis's input files belong to (their metadata name it); one, or an error."""
    if len(names) != 1:
        raise ArtifactError(f"an analysis reads one model's files; these belong to {sorted(names) or 'no model'}")
    return next(iter(names))
