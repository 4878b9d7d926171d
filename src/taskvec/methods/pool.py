"""The pool every task-level method is made from, and the controls every comparison of vectors runs
beside a method: a random vector of the same norm, and demonstrations whose labels are shuffled (the
format without the mapping)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from taskvec.prompts import Prompt, demonstration_sets


def pool_pairs(pool: Sequence[Prompt]) -> list[tuple[str, str]]:
    """The pool's labelled pairs, each once, in the order the pool shows them."""
    return list(dict.fromkeys(pair for prompt in pool for pair in prompt.demonstrations))


def task_pool(
    prompts: Sequence[Prompt], pairs: Sequence[tuple[str, str]], size: int, k: int, dummies: int, seed: str
) -> tuple[list[Prompt], int]:
    """A task's pool: ``size`` demonstration sets from the pairs whose input is no dev or test query
    of ``prompts``, and how many such pairs there are; no sets where there are too few for one."""
    queries = {p.query for p in prompts if p.split in ("dev", "test")}
    kept = [pair for pair in dict.fromkeys(pairs) if pair[0] not in queries]
    if len(kept) < k + dummies:
        return [], len(kept)
    return demonstration_sets(kept, k, dummies, size, seed), len(kept)


def shuffle_labels(prompts: Sequence[Prompt], seed: int) -> list[Prompt]:
    """Each prompt with its demonstrations' outputs permuted among its inputs (the query and its
    answers unchanged): the prompt shows the format but not the mapping. Seeded per prompt."""
    shuffled = []
    for prompt in prompts:
        rng = np.random.default_rng([seed, prompt.index])
        outputs = [y for _, y in prompt.demonstrations]
        order = rng.permutation(len(outputs))
        demos = tuple((x, outputs[j]) for (x, _), j in zip(prompt.demonstrations, order))
        shuffled.append(dataclasses.replace(prompt, demonstrations=demos))
    return shuffled


def random_vectors_like(vectors: np.ndarray, seed: int) -> np.ndarray:
    """Random directions (Gaussian, seeded), each scaled to the norm of the vector in its row."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal(vectors.shape)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return (directions * np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
