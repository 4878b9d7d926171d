"""Intervals and paired tests that the report puts beside every accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from taskvec.analysis.stats import bootstrap_ci, interval, mcnemar_exact, mean_and_spread, paired_bootstrap


def test_bootstrap_interval_contains_the_accuracy_and_narrows_with_more_prompts():
    small = np.array([True] * 30 + [False] * 20)
    large = np.tile(small, 8)
    low, high = bootstrap_ci(small)
    assert low < 0.6 < high
    # binomial standard error at p = 0.6, n = 50 is 0.069: a 95% interval is about +-0.14
    assert 0.2 < high - low < 0.34
    large_low, large_high = bootstrap_ci(large)
    assert large_high - large_low < (high - low) / 2


def test_bootstrap_is_deterministic_and_degenerate_when_all_agree():
    values = [True, False, True, True, False] * 10
    assert bootstrap_ci(values) == bootstrap_ci(values)
    assert bootstrap_ci([True] * 50) == (1.0, 1.0)


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


def test_paired_bootstrap_of_several_groups_centres_on_the_mean_of_their_accuracies():
    groups = [{"icl": np.array([True] * 40 + [False] * 10), "tv": np.array([True] * 30 + [False] * 20)},
              {"icl": np.array([True] * 20 + [False] * 30), "tv": np.array([True] * 20 + [False] * 30)}]
    draws = paired_bootstrap(groups)
    assert np.mean(draws["icl"]) == pytest.approx(0.6, abs=0.01)
    assert np.mean(draws["tv"]) == pytest.approx(0.5, abs=0.01)
    low, high = interval(draws["tv"] - draws["icl"])
    assert low < -0.1 < high < 0  # tv is lower on the first group and equal on the second, prompt by prompt


def test_paired_bootstrap_needs_equal_lengths_within_a_group():
    with pytest.raises(ValueError, match="each of the group's prompts"):
        paired_bootstrap([{"icl": np.ones(5, bool), "tv": np.ones(4, bool)}])
