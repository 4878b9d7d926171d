"""The paper's analyses beyond the main table: statistics, conflicting tasks, robustness of theta,
and its projection onto the vocabulary."""
