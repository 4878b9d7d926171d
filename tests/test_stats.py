"""Intervals and paired tests that the report puts beside every accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from taskvec.analysis.stats import (
    holm,
    interval,
    mcnemar_exact,
    mean_and_spread,
    task_bootstrap,
    wilson_interval,
)


def test_mcnemar_counts_discordant_prompts_and_matches_the_binomial_tail():
    first = np.array([True] * 10 + [False] * 2 + [True] * 30)
    second = np.array([False] * 10 + [True] * 2 + [True] * 30)
    test = mcnemar_exact(first, second)
    assert (test.only_first, test.only_second) == (10, 2)
    # two-sided exact p for 2 of 12 discordant: 2 * P(X <= 2), X ~ Binomial(12, 0.5) = 2 * 79 / 4096
    assert test.p_value == pytest.approx(2 * 79 / 4096)
    assert test.significant


def test_mcnemar_is_not_significant_for_identical_or_balanced_methods():
    same = mcnemar_exact([True, False, True], [True, False, True])
    assert same.p_value == 1.0 and not same.significant
    balanced = mcnemar_exact([True] * 5 + [False] * 5, [False] * 5 + [True] * 5)
    assert balanced.p_value == 1.0


def test_mcnemar_refuses_unpaired_results():
    with pytest.raises(ValueError, match="same prompts"):
        mcnemar_exact([True, False], [True])


def test_mean_and_spread_over_seeds():
    assert mean_and_spread([0.5]) == (0.5, 0.0)
    mean, spread = mean_and_spread([0.4, 0.5, 0.6])
    assert mean == pytest.approx(0.5) and spread == pytest.approx(0.1)


def test_a_paired_resample_keeps_the_pairing_of_methods_on_the_same_prompts():
    groups = [
        {"icl": np.array([True] * 40 + [False] * 10), "tv": np.array([True] * 30 + [False] * 20)},
        {"icl": np.array([True] * 20 + [False] * 30), "tv": np.array([True] * 20 + [False] * 30)},
    ]
    draws = task_bootstrap([groups])  # one task: only its prompts are resampled
    assert np.mean(draws["icl"]) == pytest.approx(0.6, abs=0.01)
    assert np.mean(draws["tv"]) == pytest.approx(0.5, abs=0.01)
    low, high = interval(draws["tv"] - draws["icl"])
    assert low < -0.1 < high < 0  # tv is lower on the first group and equal on the second, prompt by prompt


def test_a_paired_resample_needs_equal_lengths_within_a_group():
    with pytest.raises(ValueError, match="each of the group's prompts"):
        task_bootstrap([[{"icl": np.ones(5, bool), "tv": np.ones(4, bool)}]])


@pytest.mark.parametrize(
    ("accuracy", "n", "expected"),
    [
        # reference values of the 95% Wilson score interval (z = 1.96)
        (0.5, 50, (0.3664, 0.6336)),
        (0.0, 150, (0.0, 0.0250)),
        (1.0, 150, (0.9750, 1.0)),
        (0.9, 50, (0.7864, 0.9565)),
    ],
)
def test_wilson_interval_matches_reference_values(accuracy, n, expected):
    low, high = wilson_interval(accuracy, n)
    assert low == pytest.approx(expected[0], abs=1e-4) and high == pytest.approx(expected[1], abs=1e-4)


@pytest.mark.parametrize("n", [1, 25, 150, 999])
@pytest.mark.parametrize("accuracy", [0.0, 0.02, 0.5, 1.0])
def test_wilson_interval_never_collapses_and_holds_the_estimate(accuracy, n):
    low, high = wilson_interval(accuracy, n)
    assert 0 <= low <= accuracy <= high <= 1 and high - low > 0


def test_holm_adjusts_step_down():
    # sorted p = 0.01, 0.02, 0.04 over 3 tests: 3 x 0.01 = 0.03, 2 x 0.02 = 0.04, 1 x 0.04 = 0.04
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    # monotone: a larger raw p never gets a smaller adjusted one; capped at 1
    assert holm([0.5, 0.3, 0.001]) == pytest.approx([0.6, 0.6, 0.003])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_task_bootstrap_covers_the_spread_between_tasks():
    """Two kinds of task: on one the task vector keeps all of ICL, on the other half. Resampling
    tasks, the share's interval spans most of that range; resampling prompts alone it would not."""
    full = [{"icl": np.ones(150, bool), "tv": np.ones(150, bool)}]
    half = [{"icl": np.ones(150, bool), "tv": np.arange(150) % 2 == 0}]
    draws = task_bootstrap([full, half] * 3, resamples=4000)
    assert np.mean(draws["icl"]) == pytest.approx(1.0)
    assert np.mean(draws["tv"]) == pytest.approx(0.75, abs=0.01)
    low, high = interval(draws["tv"] / draws["icl"])
    assert low < 0.62 and high > 0.88
    within = task_bootstrap([[full[0], half[0]] * 3], resamples=4000)  # prompts alone
    within_low, within_high = interval(within["tv"] / within["icl"])
    assert within_high - within_low < (high - low) / 3


def test_task_bootstrap_averages_a_tasks_groups_and_is_deterministic():
    task = [{"baseline": np.array([True, False])}, {"baseline": np.array([True, True, True, True])}]
    first = task_bootstrap([task], resamples=500)
    assert np.mean(first["baseline"]) == pytest.approx(0.75, abs=0.03)
    assert np.array_equal(first["baseline"], task_bootstrap([task], resamples=500)["baseline"])


def test_the_two_proportion_test_matches_the_textbook_z_test():
    from taskvec.analysis.stats import two_proportion_p

    # 50 of 100 against 30 of 100: pooled 0.4, z = 0.2 / sqrt(0.4 * 0.6 * 0.02) = 2.887, two-sided p = 0.0039
    assert abs(two_proportion_p(0.5, 100, 0.3, 100) - 0.00389) < 1e-4
    assert two_proportion_p(0.3, 100, 0.3, 50) == 1.0
    assert two_proportion_p(0.0, 10, 0.0, 10) == 1.0  # no spread at all: no evidence of a difference
