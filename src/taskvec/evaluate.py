"""Baseline, ICL and task-vector predictions, scoring, and layer choice."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from taskvec import store
from taskvec.forward import next_tokens, patched_sweep
from taskvec.models import LoadedModel
from taskvec.prompts import Prompt, PromptFormat, read_prompts

log = logging.getLogger(__name__)

NO_LAYER = -1

RESULT_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("index", pa.int32()),
        ("method", pa.string()),
        ("layer", pa.int16()),
        ("token_id", pa.int64()),
        ("prediction", pa.string()),
        ("correct", pa.bool_()),
    ]
)


def is_correct(prediction: str, answers: Sequence[str], exact: bool = False) -> bool:
    """First-token scoring: the stripped token must be a non-empty prefix of a valid answer, or, for
    tasks filtered to one-token answers (``exact``), equal to one."""
    token = prediction.strip()
    if exact:
        return token in answers
    return bool(token) and any(answer.startswith(token) for answer in answers)


@dataclasses.dataclass
class _Rows:
    exact: bool
    columns: dict[str, list] = dataclasses.field(default_factory=lambda: {n: [] for n in RESULT_SCHEMA.names})

    def add(self, prompt: Prompt, method: str, layer: int, token_id: int, prediction: str) -> bool:
        correct = is_correct(prediction, prompt.answers, self.exact)
        for name, value in zip(RESULT_SCHEMA.names, (prompt.split, prompt.index, method, layer, token_id,
                                                        prediction, correct)):
            self.columns[name].append(value)
        return correct

    def table(self) -> pa.Table:
        return pa.table(self.columns, schema=RESULT_SCHEMA)


def evaluate_task(lm: LoadedModel, prompts: Sequence[Prompt], vectors: dict[tuple[str, int], np.ndarray],
                  fmt: PromptFormat, batch_size: int = 16, progress: bool = False, exact: bool = False,
                  icl: dict[tuple[str, int], int] | None = None) -> pa.Table:
    """Predictions of every method: baseline on the baseline split, ICL on test, the task vector at
    every layer on dev, and on test at the layer chosen on dev.

    ``icl`` maps (split, index) to an ICL prediction already computed (by
    :func:`taskvec.extract.task_vectors_and_icl`); without it ICL runs here, on test.
    """
    decode = _decoder(lm)
    rows = _Rows(exact)
    baseline = [p for p in prompts if p.split == "baseline"]
    ids = next_tokens(lm, [fmt.query.format(x=p.query) for p in baseline], batch_size, progress)
    for prompt, token in zip(baseline, ids):
        rows.add(prompt, "baseline", NO_LAYER, int(token), decode(token))

    test = [p for p in prompts if p.split == "test"]
    if icl is None:
        ids = next_tokens(lm, [fmt.render(p.demonstrations, p.query) for p in test], batch_size, progress)
    else:
        ids = [icl[(p.split, p.index)] for p in test]
    for prompt, token in zip(test, ids):
        rows.add(prompt, "icl", NO_LAYER, int(token), decode(token))

    dev = [p for p in prompts if p.split == "dev"]
    sweep = patched_sweep(lm, [fmt.query.format(x=p.query) for p in dev], np.stack([vectors[("dev", p.index)]
                          for p in dev]), batch_size=batch_size, progress=progress)
    dev_by_layer = []
    for layer, tokens in enumerate(sweep.T):
        for prompt, token in zip(dev, tokens):
            dev_by_layer.append(rows.add(prompt, "tv", layer, int(token), decode(token)))
    best = choose_layer(np.array(dev_by_layer, dtype=float).reshape(-1, len(dev)).mean(axis=1))

    tokens = patched_sweep(lm, [fmt.query.format(x=p.query) for p in test], np.stack([vectors[("test", p.index)]
                           for p in test]), layers=[best], batch_size=batch_size, progress=progress)
    for prompt, token in zip(test, tokens[:, 0]):
        rows.add(prompt, "tv", best, int(token), decode(token))
    return rows.table()


def choose_layer(dev_accuracy_by_layer: Sequence[float]) -> int:
    """The layer with the best dev accuracy; ties go to the earliest."""
    return int(np.argmax(dev_accuracy_by_layer))


def _decoder(lm: LoadedModel):
    cache: dict[int, str] = {}

    def decode(token_id) -> str:
        key = int(token_id)
        if key not in cache:
            cache[key] = lm.tokenizer.decode([key])
        return cache[key]

    return decode


@dataclasses.dataclass(frozen=True)
class TaskScores:
    baseline: float
    icl: float
    tv: float
    best_layer: int
    n_baseline: int
    n_test: int
    dev_by_layer: list[float]
    # per prompt, in prompt order: what the accuracies above are means of (for intervals and paired tests)
    baseline_correct: tuple[bool, ...] = ()
    icl_correct: tuple[bool, ...] = ()
    tv_correct: tuple[bool, ...] = ()


def score(results: pa.Table) -> TaskScores:
    """Accuracies from a results table; the layer is chosen on dev (ties go to the earliest layer)."""
    data = results.to_pydict()
    split = np.array(data["split"])
    method = np.array(data["method"])
    layer = np.array(data["layer"])
    index = np.array(data["index"])
    correct = np.array(data["correct"], dtype=bool)

    def in_order(mask: np.ndarray) -> tuple[bool, ...]:
        return tuple(bool(c) for c in correct[mask][np.argsort(index[mask], kind="stable")])

    def accuracy(mask: np.ndarray) -> float:
        return float(correct[mask].mean()) if mask.any() else float("nan")

    n_layers = int(layer.max()) + 1
    dev_by_layer = [accuracy((method == "tv") & (split == "dev") & (layer == i)) for i in range(n_layers)]
    best = choose_layer(dev_by_layer)
    baseline = method == "baseline"
    icl = (method == "icl") & (split == "test")
    tv = (method == "tv") & (split == "test") & (layer == best)
    return TaskScores(
        baseline=accuracy(baseline),
        icl=accuracy(icl),
        tv=accuracy(tv),
        best_layer=best,
        n_baseline=int(baseline.sum()),
        n_test=int(icl.sum()),
        dev_by_layer=dev_by_layer,
        baseline_correct=in_order(baseline),
        icl_correct=in_order(icl),
        tv_correct=in_order(tv),
    )


def evaluate_file(model_dir: str | os.PathLike[str], prompts_file: str | os.PathLike[str],
                  activations_file: str | os.PathLike[str], out: str | os.PathLike[str], device: str = "auto",
                  dtype: str = "auto", batch_size: int = 16, threads: int = 0, progress: bool = False) -> TaskScores:
    """Evaluate every method on a prompts file with its extracted task vectors; write the predictions."""
    from taskvec.extract import read_activations
    from taskvec.models import load_model

    prompts, metadata = read_prompts(prompts_file)
    vectors, act_meta = read_activations(activations_file)
    lm = load_model(model_dir, device=device, dtype=dtype, threads=threads)
    start = time.perf_counter()
    table = evaluate_task(lm, prompts, vectors, PromptFormat(**metadata["format"]), batch_size, progress,
                          exact=metadata["task"]["one_token_output"])
    scores = score(table)
    log.info("%s: baseline %.2f, ICL %.2f, task vector %.2f at layer %d (%.1f s)", metadata["task"]["task"],
             scores.baseline, scores.icl, scores.tv, scores.best_layer, time.perf_counter() - start)
    store.write_parquet(table, out, {**metadata, "model": act_meta["model"], "n_layers": act_meta["n_layers"],
                                     "dtype": act_meta["dtype"]})
    return scores
