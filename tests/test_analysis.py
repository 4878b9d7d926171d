"""The analyses: how well theta identifies its task, distance histograms, t-SNE, and the
vocabulary read-out (on the real smollm2-135m)."""

from __future__ import annotations

import numpy as np
import pytest

from taskvec.analysis.pairs import PAIRS, pairs_in
from taskvec.analysis.robustness import cosine_distances, distance_histograms, nearest_centroid_accuracy, tsne_2d
from taskvec.analysis.vocabulary import top_tokens
from taskvec.forward.capture import last_token_states
from taskvec.forward.readout import next_tokens


def _clusters(n_tasks: int = 4, per_task: int = 20, spread: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_tasks, 32))
    vectors = np.concatenate([c + spread * rng.normal(size=(per_task, 32)) for c in centres])
    labels = np.repeat([f"task{i}" for i in range(n_tasks)], per_task)
    return vectors, labels


def test_nearest_centroid_identifies_separated_tasks_and_not_random_ones():
    vectors, labels = _clusters()
    assert nearest_centroid_accuracy(vectors, labels) == 1.0
    noise = np.random.default_rng(1).normal(size=vectors.shape)
    assert nearest_centroid_accuracy(noise, labels) < 0.5  # chance is 0.25


def test_within_task_distances_are_smaller_for_clustered_vectors():
    vectors, labels = _clusters()
    histograms = distance_histograms(cosine_distances(vectors), labels)
    n = len(labels)
    assert histograms["within"].sum() == 4 * 20 * 19 // 2
    assert histograms["within"].sum() + histograms["across"].sum() == n * (n - 1) // 2
    centres = (histograms["edges"][:-1] + histograms["edges"][1:]) / 2
    within_mean = (centres * histograms["within"]).sum() / histograms["within"].sum()
    across_mean = (centres * histograms["across"]).sum() / histograms["across"].sum()
    assert within_mean < across_mean / 5


def test_tsne_is_deterministic_and_keeps_clusters_apart():
    vectors, labels = _clusters(n_tasks=3, per_task=15)
    first, second = tsne_2d(vectors), tsne_2d(vectors)
    assert first.shape == (45, 2) and np.array_equal(first, second)
    assert nearest_centroid_accuracy(first, labels) == 1.0 or _euclidean_separated(first, labels)


def _euclidean_separated(points: np.ndarray, labels: np.ndarray) -> bool:
    centroids = {t: points[labels == t].mean(axis=0) for t in np.unique(labels)}
    nearest = [min(centroids, key=lambda t: np.linalg.norm(p - centroids[t])) for p in points]
    return float(np.mean(np.array(nearest) == labels)) == 1.0


def test_conflicting_pairs_are_the_papers_and_need_both_tasks():
    assert ("next_letter", "to_upper") in PAIRS and ("translation_en_es", "translation_en_fr") in PAIRS
    assert pairs_in(["next_letter", "to_upper", "list_last"]) == [("next_letter", "to_upper")]
    assert pairs_in(["to_upper"]) == []


@pytest.mark.model
def test_vocabulary_readout_of_the_last_layer_is_the_models_prediction(smollm2):
    """Through the final norm and unembedding, the last block's state gives the model's own next token."""
    texts = ["example:a->A\nexample:b->B\nexample:c->", "example:dog->dogs\nexample:cat->"]
    states = last_token_states(smollm2, texts)
    predicted = next_tokens(smollm2, texts)
    for state, token in zip(states, predicted):
        top = top_tokens(smollm2, state[-1], k=5)
        assert top[0][0] == token
        assert [logit for _, _, logit in top] == sorted((logit for _, _, logit in top), reverse=True)


def test_the_vocabulary_criterion_counts_own_answers_against_other_tasks_theta():
    """Synthetic top tokens with a known answer: upper's theta shows its own answers (as spaced capitals),
    lower's shows upper's answers, noise's shows nothing of either."""
    from taskvec.analysis.vocabulary import judge

    top = {"upper": [" A", " B", "x", "y"], "lower": ["A", "z", "q", "w"], "noise": [".", ",", "the", "\n"]}
    answers = {"upper": {"A", "B", "C"}, "lower": {" a", "b"}, "noise": {"zz"}}
    result = judge(top, answers)
    assert result["top"] == 4 and result["n_tasks"] == 3
    upper, lower, noise = (result["tasks"][t] for t in ("upper", "lower", "noise"))
    assert upper == {"own_share": 0.5, "other_share": 0.125, "names_outputs": True}  # lower's 'A' counts for it
    assert lower["own_share"] == 0.25 and lower["other_share"] == 0.25  # ' a' and 'A' match; upper's ' A', ' B'
    assert lower["names_outputs"] is False  # no more often than other tasks' theta
    assert noise == {"own_share": 0.0, "other_share": 0.0, "names_outputs": False}
    assert result["n_naming_outputs"] == 1 and result["naming_outputs"] == ["upper"]


def test_the_vocabulary_criterion_against_random_vectors_counts_only_shares_above_their_95th_percentile():
    """upper meets the criterion with half its top tokens; a random vector that often shows ' A' puts the
    95th percentile at 0.5, so upper is not beyond random there; with random vectors that show nothing it is."""
    from taskvec.analysis.vocabulary import judge

    top = {"upper": [" A", " B", "x", "y"], "noise": [".", ",", "the", "\n"]}
    answers = {"upper": {"A", "B"}, "noise": {"zz"}}
    lucky = {"upper": [[" A", " b", "q", "r"]] * 10 + [["q", "r", "s", "t"]] * 10, "noise": [["q"] * 4] * 20}
    result = judge(top, answers, lucky)
    upper = result["tasks"]["upper"]
    assert upper["names_outputs"] and upper["random_share"] == 0.25 and upper["random_share_95"] == 0.5
    assert upper["beyond_random"] is False and result["n_beyond_random"] == 0 and result["random_vectors"] == 20
    blank = {task: [["q", "r", "s", "t"]] * 20 for task in top}
    result = judge(top, answers, blank)
    assert result["beyond_random"] == ["upper"] and result["mean_random_share"] == 0.0
    assert result["tasks"]["noise"]["beyond_random"] is False  # nothing named: not beyond anything


def test_the_vocabulary_sentence_reads_the_criterion_against_the_random_baseline():
    from taskvec.report.analyses import vocabulary_sentence

    judged = {
        "top": 20,
        "n_tasks": 4,
        "n_naming_outputs": 3,
        "naming_outputs": ["a", "b", "c"],
        "mean_own_share": 0.2,
        "mean_other_share": 0.05,
        "random_vectors": 200,
        "n_beyond_random": 1,
        "beyond_random": ["a"],
        "mean_random_share": 0.004,
    }
    text = vocabulary_sentence("m", {"chosen": judged})
    assert "name the task's outputs for 3 of 4 tasks (a, b, c)" in text
    assert "against 200 random vectors of theta's norm per task (on average 0.4% of their top tokens" in text
    assert "1 of them name more of their outputs than 95% of the random vectors do (a)" in text
    old = {k: v for k, v in judged.items() if k not in ("random_vectors", "n_beyond_random", "beyond_random")}
    assert "random" not in vocabulary_sentence("m", {"chosen": old})  # a file from before the baseline
