"""The pool every task-level method is made from (taskvec.methods.pool)."""

from __future__ import annotations

from taskvec.methods.pool import pool_pairs


def test_pool_pairs_are_each_pair_once_in_the_pools_order():
    from taskvec.prompts import Prompt

    pool = [
        Prompt("dev", 0, (("a", "A"), ("b", "B")), "c", ("C",), ("d",)),
        Prompt("dev", 1, (("b", "B"), ("e", "E")), "f", ("F",), ("g",)),
    ]
    assert pool_pairs(pool) == [("a", "A"), ("b", "B"), ("e", "E")]


def _prompts():
    from taskvec.prompts import Prompt

    return [
        Prompt("dev", i, tuple((f"x{i}{j}", f"Y{(i + j) % 7}") for j in range(5)), f"q{i}", (f"A{i}",), ("d",))
        for i in range(20)
    ]


def test_deranged_labels_leave_no_demonstration_its_own_answer_and_keep_everything_else():
    """A derangement (not a plain shuffle, which keeps one label in five on average): every
    demonstration's output is another's, the inputs, query, answers and dummies stay, and the
    draw depends on the seed alone."""
    from taskvec.methods.pool import derange_labels, kept_labels

    prompts = _prompts()
    deranged = derange_labels(prompts, seed=3)
    assert deranged == derange_labels(prompts, seed=3) and deranged != derange_labels(prompts, seed=4)
    for before, after in zip(prompts, deranged):
        assert [x for x, _ in after.demonstrations] == [x for x, _ in before.demonstrations]
        assert sorted(y for _, y in after.demonstrations) == sorted(y for _, y in before.demonstrations)
        assert all(a[1] != b[1] for a, b in zip(before.demonstrations, after.demonstrations))
        assert (after.query, after.answers, after.dummies) == (before.query, before.answers, before.dummies)
    assert kept_labels(prompts, deranged) == 0.0


def test_where_no_derangement_exists_the_fewest_labels_stay():
    """Four of five demonstrations share one output: at least three keep an equal one whatever the
    order; the derangement keeps exactly three, and says so."""
    from taskvec.methods.pool import derange_labels, kept_labels
    from taskvec.prompts import Prompt

    prompt = Prompt("dev", 0, (("a", "Y"), ("b", "Y"), ("c", "Y"), ("d", "Y"), ("e", "Z")), "q", ("A",), ())
    (deranged,) = derange_labels([prompt], seed=0)
    assert kept_labels([prompt], [deranged]) == 3 / 5


def test_random_labels_come_from_the_answer_space_and_follow_the_seed():
    """Min et al.'s control: each output drawn from the task's answers, whatever the input."""
    from taskvec.methods.pool import random_labels

    prompts = _prompts()
    space = [f"Y{i}" for i in range(7)] + ["Y0"]  # repeats count once
    changed = random_labels(prompts, space, seed=1)
    assert changed == random_labels(prompts, space, seed=1) and changed != random_labels(prompts, space, seed=2)
    drawn = [y for p in changed for _, y in p.demonstrations]
    assert set(drawn) <= set(space) and len(set(drawn)) == 7  # 100 draws from 7 answers reach them all
    assert all([x for x, _ in a.demonstrations] == [x for x, _ in b.demonstrations] for a, b in zip(prompts, changed))
