"""The pool every task-level method is made from, and the controls every comparison of vectors runs
beside a method: a random vector of the same norm, and demonstrations whose labels are shuffled,
deranged (no demonstration keeps its own answer) or drawn at random from the task's answers (the
format and the answer space without the mapping)."""

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


DERANGEMENT_TRIES = 1000  # permutations drawn before settling for the one that keeps the fewest answers


def derange_labels(prompts: Sequence[Prompt], seed: int) -> list[Prompt]:
    """Each prompt with its demonstrations' outputs permuted among its inputs so that no demonstration
    keeps an output equal to its own (the query and its answers unchanged): the format and the
    answer space, without one right pair. Where the outputs repeat so much that no such permutation
    exists, the permutation that keeps the fewest. Seeded per prompt (:func:`kept_labels` counts what
    stayed)."""
    deranged = []
    for prompt in prompts:
        rng = np.random.default_rng([seed, prompt.index, 1])
        outputs = [y for _, y in prompt.demonstrations]
        best, best_kept = None, len(outputs) + 1
        for _ in range(DERANGEMENT_TRIES):
            order = rng.permutation(len(outputs))
            kept = sum(outputs[j] == y for j, y in zip(order, outputs))
            if kept < best_kept:
                best, best_kept = order, kept
            if kept == 0:
                break
        demos = tuple((x, outputs[j]) for (x, _), j in zip(prompt.demonstrations, best))
        deranged.append(dataclasses.replace(prompt, demonstrations=demos))
    return deranged


def random_labels(prompts: Sequence[Prompt], outputs: Sequence[str], seed: int) -> list[Prompt]:
    """Each prompt with every demonstration's output replaced by one drawn uniformly from ``outputs``
    (the task's answer space: its distinct answers), as Min et al. (2022) test ICL: the answer space
    and the format, with the pairs' mapping left to chance. Seeded per prompt."""
    space = sorted(set(outputs))
    changed = []
    for prompt in prompts:
        rng = np.random.default_rng([seed, prompt.index, 2])
        demos = tuple((x, space[int(rng.integers(len(space)))]) for x, _ in prompt.demonstrations)
        changed.append(dataclasses.replace(prompt, demonstrations=demos))
    return changed


def kept_labels(original: Sequence[Prompt], changed: Sequence[Prompt]) -> float:
    """The share of demonstrations whose output is still their own after a label control."""
    pairs = [(a, b) for p, q in zip(original, changed) for a, b in zip(p.demonstrations, q.demonstrations)]
    return sum(a[1] == b[1] for a, b in pairs) / len(pairs) if pairs else 0.0


def random_vectors_like(vectors: np.ndarray, seed: int) -> np.ndarray:
    """Random directions (Gaussian, seeded), each scaled to the norm of the vector in its row."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal(vectors.shape)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return (directions * np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
