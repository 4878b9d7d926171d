"""Vocabulary projection: read theta as if it were the last layer's output.

The mean task vector of a task (over its dev and test prompts) at the task's chosen layer goes
through the final norm and the unembedding; its top tokens often name the task ("upper", "past",
"capital") or its typical answers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch

from taskvec import store
from taskvec.evaluate import score
from taskvec.extract import read_activations
from taskvec.forward import read_out
from taskvec.models import LoadedModel

TOP_TOKENS = 10


@torch.inference_mode()
def top_tokens(lm: LoadedModel, vector: np.ndarray, k: int = TOP_TOKENS) -> list[tuple[int, str, float]]:
    """(token id, token, logit) of the ``k`` largest logits of ``vector`` read out through the final
    norm and the unembedding."""
    logits = read_out(lm, np.asarray(vector)[None, :])[0].float()
    values, ids = torch.topk(logits, k)
    return [(int(i), lm.tokenizer.decode([int(i)]), float(v)) for i, v in zip(ids, values)]


def vocabulary_file(model_dir: str | os.PathLike[str], activations_files: Sequence[str | os.PathLike[str]],
                    results_files: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
                    device: str = "auto", dtype: str = "auto", threads: int = 0) -> None:
    """Top tokens of each task's mean theta at its chosen layer, one Parquet file per model."""
    from taskvec.models import load_model

    lm = load_model(model_dir, device=device, dtype=dtype, threads=threads)
    columns: dict[str, list] = {"task": [], "layer": [], "rank": [], "token_id": [], "token": [], "logit": []}
    for activations, results in zip(activations_files, results_files, strict=True):
        layer = score(store.read_parquet(results)).best_layer
        by_prompt, metadata = read_activations(activations)
        mean = np.mean([theta[layer] for theta in by_prompt.values()], axis=0)
        for rank, (token_id, token, logit) in enumerate(top_tokens(lm, mean)):
            for name, value in zip(columns, (metadata["task"], layer, rank + 1, token_id, token, round(logit, 3))):
                columns[name].append(value)
    table = pa.table(columns, schema=pa.schema([("task", pa.string()), ("layer", pa.int16()), ("rank", pa.int8()),
                                               ("token_id", pa.int64()), ("token", pa.string()),
                                               ("logit", pa.float32())]))
    store.write_parquet(table, out, {"model": lm.provenance, "top": TOP_TOKENS})
