"""Confidence intervals and paired tests for accuracies measured on a few dozen prompts.

With 50 test prompts one prompt is 2 points of accuracy. So:

- every per-task accuracy carries a 95% Wilson score interval, which, unlike a percentile bootstrap,
  does not collapse to a point at 0 or 1;
- a mean over tasks (and the task vector's share of ICL accuracy) carries a two-level bootstrap
  interval: tasks are resampled, then each drawn task's prompts, so the interval covers which tasks
  were studied as well as which prompts;
- task vector against ICL is a paired comparison on the same prompts (McNemar's exact test), and
  p-values over many tasks are Holm-adjusted for the family of tests.
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


Z_95 = 1.959963984540054  # the standard normal quantile of 0.975


def wilson_interval(accuracy: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``accuracy`` observed on ``n`` independent items.
    Its width is positive for every n, also at accuracies of exactly 0 or 1."""
    if n <= 0 or not np.isfinite(accuracy):
        return (float("nan"), float("nan"))
    denominator = 1 + z * z / n
    centre = (accuracy + z * z / (2 * n)) / denominator
    half = z * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if accuracy <= 0 else max(0.0, centre - half)
    high = 1.0 if accuracy >= 1 else min(1.0, centre + half)
    return (low, high)


def two_proportion_p(first: float, n_first: int, second: float, n_second: int) -> float:
    """Two-sided p-value of the z-test that two proportions observed on independent samples (of
    ``n_first`` and ``n_second`` items) are equal; 1 where the pooled proportion is 0 or 1."""
    if n_first <= 0 or n_second <= 0:
        return float("nan")
    pooled = (first * n_first + second * n_second) / (n_first + n_second)
    variance = pooled * (1 - pooled) * (1 / n_first + 1 / n_second)
    if variance <= 0:
        return 1.0
    z = abs(first - second) / math.sqrt(variance)
    return math.erfc(z / math.sqrt(2))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: adjusted p-values that control the family-wise error rate over
    all the tests given (reject where the adjusted value is below the level)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def task_bootstrap(
    tasks: Sequence[Sequence[dict[str, np.ndarray]]], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict[str, np.ndarray]:
    """Two-level bootstrap distribution of the mean over tasks of each method's accuracy.

    ``tasks[t]`` is a list of groups; a group holds per-prompt correctness of one or more methods on
    the same prompts (e.g. ICL and the task vector on the test prompts). Each resample draws the tasks
    with replacement, then within each drawn task each group's prompts with replacement (paired across
    the group's methods), and averages the methods' accuracies over the drawn tasks. A task's accuracy
    is the mean over its groups. Returns, per method, ``[resamples]`` means."""
    rng = np.random.default_rng(seed)
    per_task: list[dict[str, np.ndarray]] = []
    for groups in tasks:
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        for group in groups:
            size = len(next(iter(group.values())))
            if size == 0 or any(len(values) != size for values in group.values()):
                raise ValueError("every method of a group needs a result for each of the group's prompts")
            draw = rng.integers(0, size, size=(resamples, size))
            for method, values in group.items():
                sums[method] = sums.get(method, 0) + np.asarray(values, dtype=float)[draw].mean(axis=1)
                counts[method] = counts.get(method, 0) + 1
        per_task.append({method: total / counts[method] for method, total in sums.items()})
    methods = list(per_task[0])
    task_draw = rng.integers(0, len(per_task), size=(resamples, len(per_task)))
    columns = np.arange(resamples)[:, None]
    return {method: np.stack([t[method] for t in per_task])[task_draw, columns].mean(axis=1) for method in methods}


def interval(distribution: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` (95%) of a bootstrap distribution."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(distribution, [tail, 100 - tail])
    return (float(low), float(high))


def floored_interval(distribution: np.ndarray, accuracy: float, n: int) -> tuple[float, float]:
    """A mean accuracy's bootstrap interval, never narrower than the Wilson interval of its ``n``
    prompts taken together: where every prompt agrees, as at an accuracy of 0, resampling sees no
    spread, and the interval would otherwise collapse to a point."""
    low, high = interval(distribution)
    if n <= 0:
        return low, high
    wilson_low, wilson_high = wilson_interval(accuracy, n)
    return min(low, wilson_low), max(high, wilson_high)


def contrast_interval(differences: np.ndarray, comparisons: int = 1) -> tuple[float, float]:
    """The interval of a paired contrast's bootstrap distribution, Bonferroni-adjusted for the
    ``comparisons`` contrasts of its family: central 1 - 0.05 / comparisons, so that all of them
    cover together at 95%. A contrast is significant where its interval excludes 0."""
    return interval(differences, 1 - (1 - CONFIDENCE) / max(1, comparisons))


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


def distribution_gap(reference: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: KL(reference || other) in nats, from log-probabilities, and whether the top tokens agree."""
    p = np.exp(reference.astype(np.float64))
    kl = (p * (reference.astype(np.float64) - other.astype(np.float64))).sum(axis=1)
    return np.maximum(kl, 0.0), reference.argmax(axis=1) == other.argmax(axis=1)
