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
