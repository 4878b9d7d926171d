"""Vocabulary projection: read theta as if it were the last layer's output, and judge whether its
top tokens name the task's outputs, as the paper observes for its models.

The mean task vector of a task (over its dev and test prompts) at a layer goes through the final
norm and the unembedding. The criterion: the share of its top ``TOP_TOKENS`` tokens that are first
tokens of the task's own answers, against the same share for the other tasks' mean thetas (how often
the answers of this task come up anyway). Tokens are compared as text with case and surrounding
space ignored (`` A`` counts for the answer ``a``). A task's theta *names its outputs* where its own
share is positive and above the other thetas' mean share. Both the chosen layer and the last layer
are read.

Other tasks' theta share the model's generic tokens (letters, common words), so the criterion is also
read against vectors that carry no task: ``RANDOM_VECTORS`` Gaussian vectors per task and layer, each
of the mean theta's norm, read out the same way. A task's theta names its outputs *beyond random*
where it meets the criterion and its own share is above what 95% of those random vectors reach.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch

from taskvec import store
from taskvec.analysis import one_model
from taskvec.compute import DEFAULT_COMPUTE, Compute
from taskvec.evaluate import read_layer_choice
from taskvec.extract import read_activations
from taskvec.forward.readout import read_out
from taskvec.loader import match_runs
from taskvec.models import LoadedModel
from taskvec.prompts import first_token_id, read_prompts

TOP_TOKENS = 20
RANDOM_VECTORS = 200
RANDOM_SEED = 0

SCHEMA = pa.schema(
    [
        ("task", pa.string()),
        ("layer_kind", pa.string()),
        ("layer", pa.int16()),
        ("rank", pa.int8()),
        ("token_id", pa.int64()),
        ("token", pa.string()),
        ("answer_token", pa.bool_()),
        ("logit", pa.float32()),
    ]
)


@torch.inference_mode()
def top_tokens(lm: LoadedModel, vector: np.ndarray, k: int = TOP_TOKENS) -> list[tuple[int, str, float]]:
    """(token id, token, logit) of the ``k`` largest logits of ``vector`` read out through the final
    norm and the unembedding."""
    logits = read_out(lm, np.asarray(vector)[None, :])[0].float()
    values, ids = torch.topk(logits, k)
    return [(int(i), lm.tokenizer.decode([int(i)]), float(v)) for i, v in zip(ids, values)]


@torch.inference_mode()
def random_top_tokens(
    lm: LoadedModel, norm: float, hidden: int, seed: int, n: int = RANDOM_VECTORS, k: int = TOP_TOKENS
) -> list[list[str]]:
    """The top ``k`` tokens (text) of ``n`` Gaussian vectors of norm ``norm``, read out as
    :func:`top_tokens` reads theta; the same ``seed`` gives the same vectors."""
    vectors = np.random.default_rng(seed).standard_normal((n, hidden)).astype(np.float32)
    vectors *= norm / np.linalg.norm(vectors, axis=1, keepdims=True)
    out = []
    for start in range(0, n, 50):  # bounded memory: 50 x vocabulary logits at a time
        ids = torch.topk(read_out(lm, vectors[start : start + 50]).float(), k).indices
        out += [[lm.tokenizer.decode([int(i)]) for i in row] for row in ids]
    return out


def normalized(token: str) -> str:
    """A token's text as the criterion compares it: case and surrounding space ignored."""
    return token.strip().lower()


def answer_tokens(lm: LoadedModel, prompts_file: str | os.PathLike[str]) -> set[int]:
    """First token ids of every answer that a task's prompts score, as written in its prompts."""
    prompts, _ = read_prompts(prompts_file)
    return {first_token_id(lm.tokenizer, answer) for p in prompts for answer in p.answers}


def _share(top: list[str], answers: set[str]) -> float:
    return sum(normalized(token) in answers for token in top) / len(top)


def judge(
    top: dict[str, list[str]], answers: dict[str, set[str]], random: dict[str, list[list[str]]] | None = None
) -> dict:
    """The criterion over every task: ``top[t]`` are the top tokens (text) of task t's mean theta,
    ``answers[t]`` the text of its answers' first tokens. Returns per task the share of the top tokens
    that are its own answer tokens, the mean of that share for the other tasks' theta, whether it names
    its outputs, and over tasks how many do. With ``random[t]`` (the top tokens of random vectors of
    theta's norm), also the random vectors' mean share and 95th percentile, and whether theta's share
    is above that percentile as well (``beyond_random``)."""
    answers = {task: {normalized(a) for a in texts} - {""} for task, texts in answers.items()}
    tasks = list(top)
    k = len(next(iter(top.values()))) if top else 0
    per_task = {}
    for task in tasks:
        own = _share(top[task], answers[task])
        others = [_share(top[other], answers[task]) for other in tasks if other != task]
        other_share = float(np.mean(others)) if others else 0.0
        per_task[task] = {
            "own_share": round(own, 4),
            "other_share": round(other_share, 4),
            "names_outputs": bool(own > 0 and own > other_share),
        }
        if random is not None:
            shares = np.array([_share(tokens, answers[task]) for tokens in random[task]])
            high = float(np.quantile(shares, 0.95))
            per_task[task] |= {
                "random_share": round(float(shares.mean()), 4),
                "random_share_95": round(high, 4),
                "beyond_random": bool(per_task[task]["names_outputs"] and own > high),
            }
    named = [t for t in tasks if per_task[t]["names_outputs"]]
    extra = {}
    if random is not None:
        beyond = [t for t in tasks if per_task[t]["beyond_random"]]
        extra = {
            "random_vectors": len(next(iter(random.values()))) if random else 0,
            "n_beyond_random": len(beyond),
            "beyond_random": beyond,
            "mean_random_share": round(float(np.mean([v["random_share"] for v in per_task.values()])), 4),
        }
    return {
        "top": k,
        "tasks": per_task,
        "n_tasks": len(tasks),
        "n_naming_outputs": len(named),
        "naming_outputs": named,
        "mean_own_share": round(float(np.mean([v["own_share"] for v in per_task.values()])), 4),
        "mean_other_share": round(float(np.mean([v["other_share"] for v in per_task.values()])), 4),
    } | extra


def vocabulary_file(
    model_dir: str | os.PathLike[str],
    activations_files: Sequence[str | os.PathLike[str]],
    results_files: Sequence[str | os.PathLike[str]],
    prompts_files: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    compute: Compute = DEFAULT_COMPUTE,
) -> None:
    """Top tokens of each task's mean theta at its chosen layer and at the last layer, with the
    criterion's judgement in the file's metadata; one Parquet file per model."""
    lm = compute.load(model_dir)
    models = set()
    columns: dict[str, list] = {name: [] for name in SCHEMA.names}
    top: dict[str, dict[str, list[str]]] = {"chosen": {}, "last": {}}
    random: dict[str, dict[str, list[list[str]]]] = {"chosen": {}, "last": {}}
    layers: dict[str, dict[str, int]] = {"chosen": {}, "last": {}}
    answers: dict[str, set[int]] = {}
    runs = match_runs(
        {"activations": activations_files, "results": results_files, "prompts": prompts_files},
        one_sampling_per_task=True,
    )
    for run in runs:
        activations, results, prompts = run.activations, run.results, run.prompts
        by_prompt, info = read_activations(activations)
        task = info.task.name
        models.add(info.model_name)
        answers[task] = answer_tokens(lm, prompts)
        answer_texts = {normalized(lm.tokenizer.decode([i])) for i in answers[task]}
        chosen = read_layer_choice(results).layer
        for kind, layer in (("chosen", chosen), ("last", int(info.n_layers) - 1)):
            mean = np.mean([theta[layer] for theta in by_prompt.values()], axis=0)
            ranked = top_tokens(lm, mean)
            seed = zlib.crc32(f"{RANDOM_SEED}:{task}:{kind}".encode())  # fixed per task and layer, order-free
            random[kind][task] = random_top_tokens(lm, float(np.linalg.norm(mean)), mean.shape[-1], seed)
            top[kind][task] = [token for _, token, _ in ranked]
            layers[kind][task] = layer
            for rank, (token_id, token, logit) in enumerate(ranked):
                for name, value in zip(
                    SCHEMA.names,
                    (task, kind, layer, rank + 1, token_id, token, normalized(token) in answer_texts, round(logit, 3)),
                ):
                    columns[name].append(value)
    texts = {task: {lm.tokenizer.decode([i]) for i in ids} for task, ids in answers.items()}
    judgement = {kind: judge(top[kind], texts, random[kind]) for kind in top}
    store.write_parquet(
        pa.table(columns, schema=SCHEMA),
        out,
        {
            "analysis": "vocabulary",
            "model_name": one_model(models),
            "model": lm.provenance,
            "top": TOP_TOKENS,
            "random_vectors": RANDOM_VECTORS,
            "judgement": judgement,
            "layers": layers,
        },
    )
