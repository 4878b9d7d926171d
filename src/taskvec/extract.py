"""Task vectors: the last-token residual stream of demonstrations + a dummy query, per layer,
averaged over the dummies."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from taskvec import store
from taskvec.errors import ConfigError
from taskvec.forward.capture import shared_prefix_states
from taskvec.forward.generate import Continuation
from taskvec.forward.readout import next_tokens_from_states
from taskvec.models import LoadedModel
from taskvec.prompts import Prompt, PromptFormat, RunInfo

log = logging.getLogger(__name__)
EVALUATED_SPLITS = ("dev", "test")


def task_vectors(
    lm: LoadedModel, prompts: Sequence[Prompt], fmt: PromptFormat, batch_size: int = 16, progress: bool = False
) -> np.ndarray:
    """theta for each prompt and layer, ``[n_prompts, n_layers, hidden]`` float32."""
    groups = [[fmt.render(p.demonstrations, dummy) for dummy in p.dummies] for p in prompts]
    if any(not group for group in groups):
        raise ConfigError("every prompt needs at least one dummy query")
    return shared_prefix_states(lm, groups, batch_size=batch_size, progress=progress).mean(axis=1)


def task_vectors_and_icl(
    lm: LoadedModel,
    prompts: Sequence[Prompt],
    fmt: PromptFormat,
    batch_size: int = 16,
    progress: bool = False,
    generate: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """theta for each prompt and layer, and the ICL prediction (next token id) of each prompt; with
    ``generate``, also the ICL prompt's greedy generation for the strict metric (starting with that
    prediction, up to the separator or ``fmt.max_answer_tokens`` tokens).

    The ICL prompt (demonstrations + the real query) shares its demonstrations with the dummy-query
    prompts that theta comes from, so it runs as one more suffix on their shared prefix, and its
    generation continues on that cache.
    """
    groups = [[fmt.render(p.demonstrations, query) for query in (*p.dummies, p.query)] for p in prompts]
    if any(len(group) < 2 for group in groups):
        raise ConfigError("every prompt needs at least one dummy query")
    if not generate:
        states = shared_prefix_states(lm, groups, batch_size=batch_size, progress=progress)
        return states[:, :-1].mean(axis=1), next_tokens_from_states(lm, states[:, -1, -1])
    states, generated = shared_prefix_states(
        lm,
        groups,
        batch_size=batch_size,
        progress=progress,
        continue_last=Continuation(fmt.max_answer_tokens, fmt.separator),
        answers=[p.strict_answers for p in prompts],
    )
    return states[:, :-1].mean(axis=1), np.array([ids[0] for ids in generated], dtype=np.int64), generated


def activations_table(prompts: Sequence[Prompt], vectors: np.ndarray) -> pa.Table:
    """One row per (prompt, layer); the vector as fixed_size_list<float32>."""
    n_prompts, n_layers, hidden = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.table(
        {
            "split": pa.array(np.repeat([p.split for p in prompts], n_layers).tolist(), pa.string()),
            "index": pa.array(np.repeat([p.index for p in prompts], n_layers), pa.int32()),
            "layer": pa.array(np.tile(np.arange(n_layers), n_prompts), pa.int16()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, hidden),
        }
    )


def write_activations(table: pa.Table, path: str | os.PathLike[str], info: RunInfo) -> None:
    """Write an activations table with its run's metadata (the same for the study and `taskvec extract`)."""
    store.write_parquet(
        table,
        path,
        info.to_dict(),
        use_byte_stream_split=["vector.list.element"],
        use_dictionary=["split"],
        row_group_size=4096,
    )


def read_activations(path: str | os.PathLike[str]) -> tuple[dict[tuple[str, int], np.ndarray], RunInfo]:
    """Map (split, index) to that prompt's ``[n_layers, hidden]`` task vectors."""
    table = store.read_parquet(path, rebuild_hint="`taskvec extract` makes it")
    info = RunInfo.of_table(table, path)
    n_layers, hidden = info.n_layers, info.hidden_size
    vectors = table.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, n_layers, hidden)
    splits = table.column("split").to_pylist()[::n_layers]
    indices = table.column("index").to_pylist()[::n_layers]
    return {(s, i): v for s, i, v in zip(splits, indices, vectors)}, info


ICL_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("index", pa.int32()),
        ("token_id", pa.int64()),  # the ICL prompt's next token (the paper's first-token prediction)
        ("generated_ids", pa.list_(pa.int64())),  # its greedy generation for the strict metric
    ]
)


@dataclasses.dataclass(frozen=True)
class IclOutputs:
    """The ICL prompt's prediction and strict-metric generation per (split, index), computed on the
    extraction's pass over the demonstrations."""

    tokens: dict[tuple[str, int], int]
    generations: dict[tuple[str, int], list[int]]


def icl_table(prompts: Sequence[Prompt], tokens: np.ndarray, generations: Sequence[list[int]]) -> pa.Table:
    return pa.table(
        {
            "split": [p.split for p in prompts],
            "index": [p.index for p in prompts],
            "token_id": [int(token) for token in tokens],
            "generated_ids": [list(map(int, ids)) for ids in generations],
        },
        schema=ICL_SCHEMA,
    )


def write_icl(table: pa.Table, path: str | os.PathLike[str], info: RunInfo) -> None:
    """Write the ICL outputs of a task's extraction with its run's metadata."""
    store.write_parquet(table, path, info.to_dict(), use_dictionary=["split"])


def read_icl(path: str | os.PathLike[str]) -> tuple[IclOutputs, RunInfo]:
    table = store.read_parquet(path, rebuild_hint="`taskvec extract --icl-out` makes it")
    info = RunInfo.of_table(table, path)
    keys = list(zip(table.column("split").to_pylist(), table.column("index").to_pylist()))
    tokens = dict(zip(keys, table.column("token_id").to_pylist()))
    return IclOutputs(tokens, dict(zip(keys, table.column("generated_ids").to_pylist()))), info
