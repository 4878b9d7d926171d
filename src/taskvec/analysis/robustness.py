"""Robustness of theta: do the task vectors of different prompts of one task agree, and do they
tell tasks apart?

All tasks are compared at one layer per model: the best layer of the mean dev accuracy curve (each
task's own layer would put the tasks at different depths). Vectors are compared by cosine distance
(the residual stream carries a few very large coordinates that would dominate Euclidean distance).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from taskvec import store
from taskvec.analysis import one_model
from taskvec.evaluate import read_layer_choice
from taskvec.extract import read_activations
from taskvec.loader import match_runs

TSNE_SEED = 0
HISTOGRAM_BINS = 40


def common_layer(results_files: Sequence[Path]) -> int:
    """The layer with the best mean dev accuracy over the tasks (ties go to the earliest)."""
    curves = [read_layer_choice(path).dev_accuracy for path in results_files]
    return int(np.argmax(np.mean(curves, axis=0)))


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def nearest_centroid_accuracy(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out: the share of task vectors whose nearest task centroid (cosine) is their own task's."""
    unit = _unit(vectors)
    tasks = np.unique(labels)
    sums = np.stack([unit[labels == t].sum(axis=0) for t in tasks])
    counts = np.array([(labels == t).sum() for t in tasks], dtype=float)
    own = np.searchsorted(tasks, labels)
    correct = 0
    for i, vector in enumerate(unit):
        centroids = sums.copy()
        centroids[own[i]] -= vector
        centroids /= np.maximum(counts - (np.arange(len(tasks)) == own[i]), 1)[:, None]
        correct += int(np.argmax(_unit(centroids) @ vector) == own[i])
    return correct / len(unit)


def cosine_distances(vectors: np.ndarray) -> np.ndarray:
    unit = _unit(vectors)
    return np.clip(1 - unit @ unit.T, 0, 2)


def distance_histograms(distances: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Histogram counts of within-task and across-task distances (each pair once), on shared bins."""
    upper = np.triu_indices(len(labels), k=1)
    same = labels[upper[0]] == labels[upper[1]]
    values = distances[upper]
    edges = np.linspace(0, max(float(values.max()), 1e-6), HISTOGRAM_BINS + 1)
    return {
        "edges": edges,
        "within": np.histogram(values[same], edges)[0],
        "across": np.histogram(values[~same], edges)[0],
    }


def tsne_2d(vectors: np.ndarray) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    # One thread and a fixed seed: the embedding is then the same on every run.
    with threadpool_limits(1):
        embedding = TSNE(
            n_components=2,
            metric="cosine",
            init="pca",
            random_state=TSNE_SEED,
            perplexity=min(30.0, (len(vectors) - 1) / 3),
            n_jobs=1,
        ).fit_transform(vectors)
    return embedding.astype(np.float32)


def robustness_file(
    activations_files: Sequence[str | os.PathLike[str]],
    results_files: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
) -> dict:
    """t-SNE coordinates of every dev and test theta at the common layer, within/across-task
    distance histograms, and how well theta identifies its task; written as one Parquet file with
    the summary in its metadata."""
    runs = match_runs({"activations": activations_files, "results": results_files}, one_sampling_per_task=True)
    layer = common_layer([run.results for run in runs])
    vectors, labels, splits = [], [], []
    models = set()
    for run in runs:
        by_prompt, info = read_activations(run.activations)
        models.add(info.model_name)
        for (split, _), theta in sorted(by_prompt.items()):
            vectors.append(theta[layer])
            labels.append(info.task.name)
            splits.append(split)
    matrix = np.stack(vectors).astype(np.float64)
    labels_array = np.array(labels)
    distances = cosine_distances(matrix)
    histograms = distance_histograms(distances, labels_array)
    same = labels_array[:, None] == labels_array[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    summary = {
        "layer": layer,
        "n_vectors": len(labels),
        "n_tasks": len(set(labels)),
        "nearest_centroid_accuracy": round(nearest_centroid_accuracy(matrix, labels_array), 4),
        "mean_within_task_distance": round(float(distances[same & off_diagonal].mean()), 4),
        "mean_across_task_distance": round(float(distances[~same].mean()), 4),
        "histogram_edges": [round(float(e), 6) for e in histograms["edges"]],
        "histogram_within": histograms["within"].tolist(),
        "histogram_across": histograms["across"].tolist(),
    }
    coords = tsne_2d(matrix)
    table = pa.table({"task": labels, "split": splits, "x": coords[:, 0], "y": coords[:, 1]})
    store.write_parquet(table, out, {"analysis": "robustness", "model_name": one_model(models), "summary": summary})
    return summary
