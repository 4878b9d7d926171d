"""Confidence intervals and paired tests for accuracies measured on a few dozen prompts.

With 50 test prompts one prompt is 2 points of accuracy, so every accuracy carries a 95% bootstrap
interval (resampling prompts), and task vector against ICL is a paired comparison on the same
prompts (McNemar's exact test on the prompts where exactly one of the two is right).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed: the same results give the same intervals
ALPHA = 0.05


def paired_bootstrap(groups: Sequence[dict[str, np.ndarray]], resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> dict[str, np.ndarray]:
    """Bootstrap distribution of the mean over ``groups`` of each method's accuracy.

    Each group holds per-prompt correctness of one or more methods on the same prompts (for example
    ICL and the task vector on one task's test prompts of one split seed). Every resample draws each
    group's prompts with replacement, the same draw for all of its methods (a paired resample), and
    averages each method's group accuracies. Returns, per method, ``[resamples]`` means.
    """
    rng = np.random.default_rng(seed)
    methods = list(groups[0])
    totals = {method: np.zeros(resamples) for method in methods}
    for group in groups:
        size = len(next(iter(group.values())))
        if size == 0 or any(len(values) != size for values in group.values()):
            raise ValueError("every method of a group needs a result for each of the group's prompts")
        draw = rng.integers(0, size, size=(resamples, size))
        for method in methods:
            totals[method] += np.asarray(group[method], dtype=float)[draw].mean(axis=1)
    return {method: total / len(groups) for method, total in totals.items()}


def interval(distribution: np.ndarray) -> tuple[float, float]:
    """The central 95% of a bootstrap distribution."""
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(distribution, [tail, 100 - tail])
    return (float(low), float(high))


def bootstrap_ci(correct: Sequence[bool] | np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``correct`` (prompts resampled with replacement)."""
    values = np.asarray(correct, dtype=float)
    if values.size == 0:
        return (float("nan"), float("nan"))
    return interval(paired_bootstrap([{"x": values}], resamples, seed)["x"])


@dataclasses.dataclass(frozen=True)
class PairedTest:
    """McNemar's exact test of two methods on the same prompts."""

    only_first: int  # prompts the first method gets right and the second wrong
    only_second: int
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA


def mcnemar_exact(first: Sequence[bool] | np.ndarray, second: Sequence[bool] | np.ndarray) -> PairedTest:
    """Two-sided exact McNemar test: under no difference, the discordant prompts split 50/50."""
    a = np.asarray(first, dtype=bool)
    b = np.asarray(second, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("a paired test needs both methods' results on the same prompts")
    only_first = int((a & ~b).sum())
    only_second = int((~a & b).sum())
    n = only_first + only_second
    smaller = min(only_first, only_second)
    tail = sum(math.comb(n, i) for i in range(smaller + 1)) / 2**n if n else 1.0
    return PairedTest(only_first, only_second, min(1.0, 2 * tail))


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation over seeds (0 for a single seed)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0
