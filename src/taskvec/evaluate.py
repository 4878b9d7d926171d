"""Baseline, ICL and task-vector predictions, their scores (see :mod:`taskvec.scoring`), and layer choice."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from taskvec import store
from taskvec.errors import ArtifactError
from taskvec.forward.generate import Continuation, greedy_continue
from taskvec.forward.patched import patched_sweep, task_vector_patch
from taskvec.forward.readout import next_tokens
from taskvec.models import LoadedModel
from taskvec.prompts import Prompt, PromptFormat, RunInfo
from taskvec.scoring import first_token_correct, strict_correct

log = logging.getLogger(__name__)

NO_LAYER = -1

RESULT_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("index", pa.int32()),
        ("query", pa.string()),
        ("method", pa.string()),
        ("layer", pa.int16()),
        ("token_id", pa.int64()),
        ("prediction", pa.string()),
        ("correct", pa.bool_()),  # the paper's first-token rule
        ("generated", pa.string()),  # greedy generation to the separator (null where not generated)
        ("strict_correct", pa.bool_()),  # the strict metric (null where not generated)
    ]
)
STRICT_ROWS = (("baseline", "baseline"), ("test", "icl"), ("test", "tv"))  # (split, method) with a strict score


@dataclasses.dataclass
class _Rows:
    scoring: str
    columns: dict[str, list] = dataclasses.field(default_factory=lambda: {n: [] for n in RESULT_SCHEMA.names})

    def add(self, prompt: Prompt, method: str, layer: int, token_id: int, prediction: str) -> bool:
        correct = first_token_correct(prediction, prompt.answers, self.scoring)
        for name, value in zip(
            RESULT_SCHEMA.names,
            (prompt.split, prompt.index, prompt.query, method, layer, token_id, prediction, correct, None, None),
        ):
            self.columns[name].append(value)
        return correct

    def table(self) -> pa.Table:
        return pa.table(self.columns, schema=RESULT_SCHEMA)


def evaluate_task(
    lm: LoadedModel,
    prompts: Sequence[Prompt],
    vectors: dict[tuple[str, int], np.ndarray],
    fmt: PromptFormat,
    batch_size: int = 16,
    progress: bool = False,
    scoring: str = "exact",
    icl: dict[tuple[str, int], int] | None = None,
) -> pa.Table:
    """Predictions of every method: baseline on the baseline split, ICL on test, the task vector at
    every layer on dev, and on test at the layer chosen on dev.

    ``icl`` maps (split, index) to an ICL prediction already computed (by the extraction,
    :func:`taskvec.extract.task_vectors_and_icl`); without it ICL runs here, on test.
    """
    decode = token_decoder(lm)
    rows = _Rows(scoring)
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
    sweep = patched_sweep(
        lm,
        [fmt.query.format(x=p.query) for p in dev],
        np.stack([vectors[("dev", p.index)] for p in dev]),
        batch_size=batch_size,
        progress=progress,
    )
    for layer, tokens in enumerate(sweep.T):
        for prompt, token in zip(dev, tokens):
            rows.add(prompt, "tv", layer, int(token), decode(token))
    best = layer_choice(rows.table()).layer

    tokens = patched_sweep(
        lm,
        [fmt.query.format(x=p.query) for p in test],
        np.stack([vectors[("test", p.index)] for p in test]),
        layers=[best],
        batch_size=batch_size,
        progress=progress,
    )
    for prompt, token in zip(test, tokens[:, 0]):
        rows.add(prompt, "tv", best, int(token), decode(token))
    return rows.table()


def add_strict_scores(
    lm: LoadedModel,
    prompts: Sequence[Prompt],
    vectors: dict[tuple[str, int], np.ndarray],
    table: pa.Table,
    fmt: PromptFormat,
    batch_size: int = 16,
    progress: bool = False,
    icl_generations: dict[tuple[str, int], list[int]] | None = None,
) -> pa.Table:
    """``table`` with the strict metric filled in for the baseline, ICL and task-vector test rows: each
    prediction's greedy continuation to the separator (at most ``fmt.max_answer_tokens`` tokens, and
    no further than it can still become a valid answer), scored by exact match against every valid
    answer. The task vector's generation runs on the bare query with
    theta patched in at the chosen layer, as its first token did. ``icl_generations`` (by split and
    index, from :func:`taskvec.extract.task_vectors_and_icl`) saves running the ICL prompts again."""
    by_key = {(p.split, p.index): p for p in prompts}
    data = table.to_pydict()
    generated, strict = list(data["generated"]), list(data["strict_correct"])
    for split, method in STRICT_ROWS:
        picks = [i for i in range(table.num_rows) if data["split"][i] == split and data["method"][i] == method]
        if not picks:
            continue
        chosen = [by_key[(split, data["index"][i])] for i in picks]
        first = [data["token_id"][i] for i in picks]
        if method == "icl" and icl_generations is not None:
            ids = [icl_generations[(p.split, p.index)] for p in chosen]
            if any(tokens[0] != token for tokens, token in zip(ids, first)):
                raise ArtifactError("the ICL generations do not start with the ICL predictions of the results")
            for i, prompt, tokens in zip(picks, chosen, ids):
                generated[i] = lm.tokenizer.decode(tokens)
                strict[i] = strict_correct(generated[i], prompt.strict_answers, fmt.separator)
            continue
        if method == "icl":
            texts = [fmt.render(p.demonstrations, p.query) for p in chosen]
        else:
            texts = [fmt.query.format(x=p.query) for p in chosen]
        patch = None
        if method == "tv":
            layers = [data["layer"][i] for i in picks]
            patch = task_vector_patch(
                layers, np.stack([vectors[(p.split, p.index)][layer] for p, layer in zip(chosen, layers)])
            )
        ids = greedy_continue(
            lm,
            texts,
            first,
            Continuation(fmt.max_answer_tokens, fmt.separator),
            batch_size,
            intervention=patch,
            answers=[p.strict_answers for p in chosen],
            progress=progress,
        )
        for i, prompt, tokens in zip(picks, chosen, ids):
            generated[i] = lm.tokenizer.decode(tokens)
            strict[i] = strict_correct(generated[i], prompt.strict_answers, fmt.separator)
    table = table.set_column(RESULT_SCHEMA.get_field_index("generated"), "generated", pa.array(generated, pa.string()))
    return table.set_column(
        RESULT_SCHEMA.get_field_index("strict_correct"), "strict_correct", pa.array(strict, pa.bool_())
    )


def choose_layer(dev_accuracy_by_layer: Sequence[float]) -> int:
    """The layer with the best dev accuracy; ties go to the earliest."""
    return int(np.argmax(dev_accuracy_by_layer))


@dataclasses.dataclass(frozen=True)
class LayerChoice:
    """Where theta is patched on the test queries: the layer of best dev accuracy (ties go to the
    earliest), with the dev accuracy of theta patched at every layer. Computed once from a results
    table's dev rows (:func:`layer_choice`), stored with the results by :func:`write_results`, and read
    from there by every consumer (:func:`read_layer_choice`). ``found`` is False where no layer answers
    a single dev query: the layer is then the first by the tie rule, not a finding."""

    layer: int
    dev_accuracy: tuple[float, ...]

    @property
    def found(self) -> bool:
        return bool(self.dev_accuracy) and max(self.dev_accuracy) > 0

    @classmethod
    def of_curve(cls, dev_accuracy_by_layer: Sequence[float]) -> LayerChoice:
        return cls(choose_layer(dev_accuracy_by_layer), tuple(float(a) for a in dev_accuracy_by_layer))

    def to_dict(self) -> dict:
        return {"layer": self.layer, "dev_accuracy": list(self.dev_accuracy)}


def layer_choice(results: pa.Table) -> LayerChoice:
    """The layer choice of a results table: theta's dev accuracy at each layer, and the best layer."""
    split = np.array(results.column("split").to_pylist())
    method = np.array(results.column("method").to_pylist())
    layer = np.array(results.column("layer").to_pylist())
    correct = np.array(results.column("correct").to_pylist(), dtype=bool)
    dev = (method == "tv") & (split == "dev")
    if not dev.any():
        return LayerChoice(0, ())
    n_layers = int(layer.max()) + 1
    return LayerChoice.of_curve([float(correct[dev & (layer == i)].mean()) for i in range(n_layers)])


def _stored_choice(metadata: dict) -> LayerChoice | None:
    stored = metadata.get("layer_choice")
    if stored is None:
        return None
    return LayerChoice(int(stored["layer"]), tuple(float(a) for a in stored["dev_accuracy"]))


def read_layer_choice(path: str | os.PathLike[str]) -> LayerChoice:
    """The layer choice stored with a results file (its footer alone is read)."""
    choice = _stored_choice(store.parquet_metadata(path))
    if choice is None:
        raise store.ArtifactError(
            f"{path} holds no layer choice (made by an older taskvec?)", fix="delete it and make it again"
        )
    return choice


def token_decoder(lm: LoadedModel) -> Callable[[int], str]:
    """The text of one token id, decoded once per id (predictions repeat a few tokens many times)."""
    cache: dict[int, str] = {}

    def decode(token_id) -> str:
        key = int(token_id)
        if key not in cache:
            cache[key] = lm.tokenizer.decode([key])
        return cache[key]

    return decode


@dataclasses.dataclass(frozen=True)
class TaskScores:
    """Accuracies of one task and sampling of the splits: the paper's first-token metric (``baseline``,
    ``icl``, ``tv``) and the strict metric (``*_strict``; NaN where the results hold no generation)."""

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
    baseline_queries: tuple[str, ...] = ()  # the bare queries, in the same order (they repeat)
    baseline_strict: float = float("nan")
    icl_strict: float = float("nan")
    tv_strict: float = float("nan")
    baseline_strict_correct: tuple[bool, ...] = ()
    icl_strict_correct: tuple[bool, ...] = ()
    tv_strict_correct: tuple[bool, ...] = ()


def score(results: pa.Table) -> TaskScores:
    """Accuracies from a results table, at the layer chosen on dev (stored with the table where it was
    read from a results file; :class:`LayerChoice`)."""
    data = results.to_pydict()
    split = np.array(data["split"])
    method = np.array(data["method"])
    layer = np.array(data["layer"])
    index = np.array(data["index"])
    correct = np.array(data["correct"], dtype=bool)
    strict_values = data.get("strict_correct") or [None] * len(correct)
    has_strict = np.array([v is not None for v in strict_values], dtype=bool)
    strict = np.array([bool(v) for v in strict_values], dtype=bool)

    def ordered(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return values[mask][np.argsort(index[mask], kind="stable")]

    def in_order(values: np.ndarray, mask: np.ndarray) -> tuple[bool, ...]:
        return tuple(bool(c) for c in ordered(values, mask))

    def accuracy(values: np.ndarray, mask: np.ndarray) -> float:
        return float(values[mask].mean()) if mask.any() else float("nan")

    choice = _stored_choice(store.parquet_metadata(results)) or layer_choice(results)
    dev_by_layer, best = list(choice.dev_accuracy), choice.layer
    masks = {
        "baseline": method == "baseline",
        "icl": (method == "icl") & (split == "test"),
        "tv": (method == "tv") & (split == "test") & (layer == best),
    }
    strict_scores = {}
    for name, mask in masks.items():
        generated = mask & has_strict
        complete = bool(mask.any()) and bool(generated.sum() == mask.sum())
        strict_scores[f"{name}_strict"] = accuracy(strict, mask) if complete else float("nan")
        strict_scores[f"{name}_strict_correct"] = in_order(strict, mask) if complete else ()
    queries = np.array(data["query"]) if "query" in data else np.array([""] * len(correct))
    return TaskScores(
        baseline=accuracy(correct, masks["baseline"]),
        icl=accuracy(correct, masks["icl"]),
        tv=accuracy(correct, masks["tv"]),
        best_layer=best,
        n_baseline=int(masks["baseline"].sum()),
        n_test=int(masks["icl"].sum()),
        dev_by_layer=dev_by_layer,
        baseline_correct=in_order(correct, masks["baseline"]),
        icl_correct=in_order(correct, masks["icl"]),
        tv_correct=in_order(correct, masks["tv"]),
        baseline_queries=tuple(str(q) for q in ordered(queries, masks["baseline"])),
        **strict_scores,
    )


def write_results(table: pa.Table, path: str | os.PathLike[str], info: RunInfo) -> None:
    """Write a results table with its run's metadata and its layer choice (the same for the study and
    `taskvec evaluate`)."""
    store.write_parquet(table, path, {**info.to_dict(), "layer_choice": layer_choice(table).to_dict()})


def read_results(path: str | os.PathLike[str]) -> tuple[pa.Table, RunInfo]:
    table = store.read_parquet(path, rebuild_hint="`taskvec evaluate` makes it")
    return table, RunInfo.of_table(table, path)
