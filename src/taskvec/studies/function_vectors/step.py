"""Task vectors against function vectors on the same prompts, with the controls beside them and the
gap between ICL's next-token distribution and each patched run's.

For one model, on the first sampling of each task's splits (its prompts, activations and results):

1. Heads (:mod:`taskvec.function_vectors`): each head's mean output at the last token of the task's
   clean ICL prompts, and its average indirect effect on the same prompts with shuffled labels (the
   first ``head_prompts`` dev prompts). The
   heads of largest effect averaged over every task given (the "universal" heads) make each task's
   function vector from that task's mean outputs.
2. The layer: the function vector is added after each block to the bare dev queries; the block with
   the best dev accuracy is kept (ties: the earliest), as theta's layer is chosen.
3. On the test prompts: the bare query + FV, shuffled-label ICL, shuffled-label ICL + FV, and the
   controls patched at theta's layer the way theta is (replacing the last token's residual stream):
   a random vector with each prompt's theta's norm, the theta of another task, and the task's mean
   theta over its dev prompts (one vector for the task: the function-vector paper's "layer average").
   The task vector itself is recomputed here (it must equal the results file's) for the distribution
   gap: the mean KL divergence from ICL's next-token distribution to the patched run's, and how often
   their top tokens agree, for TV and FV.
4. The number of heads: the FV of the top n heads for several n, at the chosen block, on test.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from taskvec import store
from taskvec.analysis.stats import distribution_gap
from taskvec.architectures import describe
from taskvec.compute import DEFAULT_COMPUTE, Compute
from taskvec.errors import ConfigError
from taskvec.evaluate import choose_layer, read_layer_choice, token_decoder
from taskvec.extract import read_activations
from taskvec.forward.patched import next_token_variants
from taskvec.forward.readout import next_tokens
from taskvec.hooks.intervention import Intervention
from taskvec.loader import task_runs
from taskvec.methods.heads import attention_heads, default_head_count, function_vector, top_heads
from taskvec.methods.pool import random_vectors_like, shuffle_labels
from taskvec.models import LoadedModel
from taskvec.prompts import read_prompts
from taskvec.studies.function_vectors.vectors import add_sweep, head_effects, plain_and_added_next_tokens
from taskvec.studies.records import Predictions, Rows, column, schema_of

log = logging.getLogger(__name__)

NO_LAYER = -1
HEAD_CURVE = (1, 2, 4, 8, 16, 32, 64)


@dataclasses.dataclass(frozen=True)
class VectorRow:
    """One prompt under one vector, control or condition: a row of the predictions file."""

    task: str = column(pa.string())
    split: str = column(pa.string())
    index: int = column(pa.int32())
    method: str = column(pa.string())
    layer: int = column(pa.int16())
    n_heads: int = column(pa.int16())
    token_id: int = column(pa.int64())
    prediction: str = column(pa.string())
    correct: bool = column(pa.bool_())
    kl_from_icl: float | None = column(pa.float32())  # KL(ICL || this run) of the next-token distributions, nats
    agrees_with_icl: bool | None = column(pa.bool_())  # the same top token as ICL


@dataclasses.dataclass(frozen=True)
class HeadRow:
    """One attention head's effect on one task: a row of the heads file."""

    task: str = column(pa.string())
    layer: int = column(pa.int16())
    head: int = column(pa.int16())
    aie: float = column(pa.float32())  # mean rise in the answer's probability, shuffled-label dev prompts
    clean_probability: float = column(pa.float32())  # mean unpatched probability of the answer on those prompts


SCHEMA = schema_of(VectorRow)
HEAD_SCHEMA = schema_of(HeadRow)


def last_log_probs(lm: LoadedModel, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
    """Log-probabilities of the next token after each text: ``[n, vocab]``."""
    out = np.zeros((len(texts), describe(lm.model).unembedding.weight.shape[0]), dtype=np.float32)
    next_tokens(lm, texts, batch_size, log_probs=out)
    return out


class _Rows(Predictions):
    """A task's rows: each predicted token decoded and scored by the task's first-token rule."""

    def __init__(self, lm, task: str, scoring: str) -> None:
        super().__init__(VectorRow, task, scoring, token_decoder(lm))

    def predictions(self, prompts, method, layer, tokens, n_heads=0, split="test", gap=None) -> np.ndarray:
        """Add one row per prompt; return whether each is correct."""
        correct = []
        kl, agree = gap if gap is not None else ([None] * len(prompts), [None] * len(prompts))
        for prompt, token, k, a in zip(prompts, tokens, kl, agree):
            prediction, ok = self.scored(prompt, token)
            correct.append(ok)
            self.add(
                VectorRow(
                    task=self.task,
                    split=split,
                    index=prompt.index,
                    method=method,
                    layer=layer,
                    n_heads=n_heads,
                    token_id=int(token),
                    prediction=prediction,
                    correct=ok,
                    kl_from_icl=None if k is None else float(k),
                    agrees_with_icl=None if a is None else bool(a),
                )
            )
        return np.array(correct, dtype=bool)


def function_vectors_file(
    model_dir: str | os.PathLike[str],
    pairs_files: Sequence[Path],
    prompts: Sequence[Path],
    activations: Sequence[Path],
    results: Sequence[Path],
    out: str | os.PathLike[str],
    heads_out: str | os.PathLike[str],
    compute: Compute = DEFAULT_COMPUTE,
    n_heads: int | None = None,
    head_prompts: int = 10,
    seed: int = 0,
) -> None:
    """Run the comparison for one model over every task given (files matched by their metadata) and
    write the predictions (``out``) and every head's effect per task (``heads_out``)."""
    files, model, seeds = task_runs(pairs_files, prompts, results, activations)
    if len(files) < 2:
        raise ConfigError(
            "function vectors need the files of at least two tasks (the universal heads and the other-task "
            f"control); got complete files of {sorted(files) or 'none'}"
        )
    lm = compute.load(model_dir)
    batch_size = compute.batch_size
    n_layers = attention_heads(lm).n_layers
    tasks = sorted(files)
    loaded = {}
    for task in tasks:
        task_prompts, info = read_prompts(files[task].prompts)
        thetas, _ = read_activations(files[task].activations)
        loaded[task] = (task_prompts, info, thetas, read_layer_choice(files[task].results).layer)

    start = time.perf_counter()
    effects, head_rows = {}, Rows(HeadRow)
    for task in tasks:
        task_prompts, info, _, _ = loaded[task]
        dev = [p for p in task_prompts if p.split == "dev"]
        subset = dev[:head_prompts]
        effects[task] = head_effects(lm, subset, subset, info.format, seed, batch_size, compute.progress)
        aie = effects[task].average_indirect_effect
        for layer in range(aie.shape[0]):
            for head in range(aie.shape[1]):
                clean = float(effects[task].clean.mean())
                head_rows.add(
                    HeadRow(task=task, layer=layer, head=head, aie=float(aie[layer, head]), clean_probability=clean)
                )
        log.info("%s %s: head effects on %d shuffled-label prompts", model, task, min(head_prompts, len(dev)))
    log.info("%s: head scan of %d tasks took %.1f s", model, len(tasks), time.perf_counter() - start)
    universal = np.mean([effects[t].average_indirect_effect for t in tasks], axis=0)
    n = n_heads or default_head_count(lm)
    chosen = top_heads(universal, n)

    rows_of = []
    for number, task in enumerate(tasks):
        task_prompts, info, thetas, tv_layer = loaded[task]
        fmt = info.format
        rows = _Rows(lm, task, info.task.rules.scoring)
        dev = [p for p in task_prompts if p.split == "dev"]
        test = [p for p in task_prompts if p.split == "test"]
        dev_queries = [fmt.query.format(x=p.query) for p in dev]
        test_queries = [fmt.query.format(x=p.query) for p in test]
        fv = function_vector(lm, effects[task].means, chosen)

        swept = add_sweep(lm, dev_queries, fv, batch_size=batch_size)
        by_layer = []
        for layer in range(n_layers):
            by_layer.append(rows.predictions(dev, "fv", layer, swept[:, layer], n, split="dev").mean())
        fv_layer = choose_layer(by_layer)

        icl_texts = [fmt.render(p.demonstrations, p.query) for p in test]
        icl_log = last_log_probs(lm, icl_texts, batch_size)
        # every patch of the bare test queries shares one prefix pass and one unpatched last token
        theta = np.stack([thetas[("test", p.index)][tv_layer] for p in test])
        other = tasks[(number + 1 + np.random.default_rng([seed, number]).integers(len(tasks) - 1)) % len(tasks)]
        other_thetas = loaded[other][2]
        other_test = sorted(i for split, i in other_thetas if split == "test")
        controls = {
            "random_vector": random_vectors_like(theta, seed + number),
            "other_task_theta": np.stack(
                [other_thetas[("test", other_test[i % len(other_test)])][tv_layer] for i in range(len(test))]
            ),
            "layer_average": np.mean([thetas[("dev", p.index)][tv_layer] for p in dev], axis=0),
        }
        counts = [c for c in HEAD_CURVE if c <= universal.size and c != n]
        means = effects[task].means
        patches = [
            Intervention(tv_layer, theta),
            Intervention(fv_layer, fv, operation="add"),
            *(Intervention(tv_layer, vectors) for vectors in controls.values()),
            *(
                Intervention(fv_layer, function_vector(lm, means, top_heads(universal, c)), operation="add")
                for c in counts
            ),
        ]
        variants = next_token_variants(lm, test_queries, patches, batch_size, log_probs=(0, 1))
        (tv_tokens, fv_tokens, *control_tokens), curve_tokens = variants.tokens[:5], variants.tokens[5:]
        tv_log, fv_log = variants.log_probs[:2]
        rows.predictions(test, "tv", tv_layer, tv_tokens, gap=distribution_gap(icl_log, tv_log))
        rows.predictions(test, "fv", fv_layer, fv_tokens, n, gap=distribution_gap(icl_log, fv_log))
        shuffled = shuffle_labels(test, seed)
        shuffled_texts = [fmt.render(p.demonstrations, p.query) for p in shuffled]
        plain, (added,) = plain_and_added_next_tokens(lm, shuffled_texts, fv_layer, [fv], batch_size)
        rows.predictions(test, "shuffled_icl", NO_LAYER, plain)
        rows.predictions(test, "shuffled_icl_fv", fv_layer, added, n)
        for method, tokens in zip(controls, control_tokens, strict=True):
            rows.predictions(test, method, tv_layer, tokens)
        for count, tokens in zip(counts, curve_tokens, strict=True):
            rows.predictions(test, "fv_curve", fv_layer, tokens, count)
        log.info(
            "%s %s: FV at block %d, TV at layer %d; other-task control: %s", model, task, fv_layer, tv_layer, other
        )
        rows_of.append(rows.table())

    metadata = {
        "analysis": "function_vectors",
        "model_name": model,
        "seeds": {task: seeds[task] for task in tasks},
        "n_heads": n,
        "heads": [list(h) for h in chosen],
        "head_prompts": head_prompts,
        "shuffle_seed": seed,
        "dtype": lm.dtype_name,
    }
    store.write_parquet(head_rows.table(), heads_out, {**metadata, "analysis": "heads"})
    store.write_parquet(pa.concat_tables(rows_of), out, metadata)
