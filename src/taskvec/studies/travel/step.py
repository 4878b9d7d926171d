"""How far a task vector travels: the number of demonstrations, and theta averaged over several
demonstration sets.

For one model, on the first sampling of each task's splits: the study's test prompts (the same
queries and dummy queries), at the layer the study chose on dev with k = 5 demonstrations (one layer
per task for every setting here, so that only the demonstrations change):

1. **Number of demonstrations** (``ks``): each test prompt's demonstrations are a nested list, the
   study's five first, then more drawn (seeded) from the task's other usable pairs (never the query,
   a dummy query or a demonstration already there). With the first k of them: the ICL prediction, and
   theta of that prompt patched into the bare query. k = 5 is the study's own prompt.
2. **Several contexts** (``contexts``): M independent sets of five demonstrations per test prompt (the
   first is the study's, the others drawn from the same pool, each set without repeats); theta
   averaged over the first M sets, patched into the bare query. M = 1 is the study's task vector.

Every patch of one prompt's bare query shares one prefix pass
(:func:`taskvec.forward.patched.next_token_variants`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from taskvec import store
from taskvec.analysis.first_sampling import StudyFiles
from taskvec.compute import DEFAULT_COMPUTE, Compute
from taskvec.errors import ConfigError
from taskvec.evaluate import token_decoder
from taskvec.extract import task_vectors, task_vectors_and_icl
from taskvec.forward.patched import next_token_variants
from taskvec.hooks.intervention import Intervention
from taskvec.models import LoadedModel
from taskvec.prompts import Prompt, PromptFormat, UsablePair
from taskvec.studies.records import Predictions, column, schema_of
from taskvec.studies.travel import STUDY

log = logging.getLogger(__name__)

DEFAULT_KS = STUDY.default("ks")
DEFAULT_CONTEXTS = STUDY.default("contexts")


@dataclasses.dataclass(frozen=True)
class TravelRow:
    """One test prompt in one setting of one experiment: a row of the study's Parquet file."""

    task: str = column(pa.string())
    experiment: str = column(pa.string())  # "k" (demonstrations per prompt) or "contexts" (sets averaged)
    value: int = column(pa.int32())  # k, or M
    index: int = column(pa.int32())  # the test prompt's index in the study's prompts file
    method: str = column(pa.string())  # "icl" or "tv"
    layer: int = column(pa.int32())  # the block theta is patched after (-1 for ICL)
    token_id: int = column(pa.int64())
    prediction: str = column(pa.string())
    correct: bool = column(pa.bool_())


SCHEMA = schema_of(TravelRow)
NO_LAYER = -1


def demonstration_pool(prompt: Prompt, usable: Sequence[UsablePair]) -> list[tuple[str, str]]:
    """The task's usable pairs a test prompt may draw more demonstrations from: none whose input is the
    query, a dummy query or one of its demonstrations (as (input, first answer))."""
    taken = {prompt.query, *prompt.dummies, *(x for x, _ in prompt.demonstrations)}
    return [(p.input, p.answers[0]) for p in usable if p.input not in taken]


def nested_demonstrations(
    prompt: Prompt, pool: Sequence[tuple[str, str]], k_max: int, seed: int
) -> tuple[tuple[str, str], ...]:
    """The prompt's own demonstrations, then ``k_max`` minus as many more from ``pool`` (seeded by the
    prompt), so that the first k of them, for every k, nest."""
    own = tuple(prompt.demonstrations)
    more = max(0, k_max - len(own))
    if more > len(pool):
        raise ConfigError(
            f"k = {k_max} needs {more} more demonstrations than the study's prompt has, but only {len(pool)} of "
            "the task's usable pairs are free of its query, dummy queries and demonstrations",
            "lower the largest k",
            "travel.ks in params.yaml",
        )
    rng = random.Random(f"travel-k:{seed}:{prompt.index}")
    return own + tuple(rng.sample(list(pool), more))


def demonstration_sets(
    prompt: Prompt, pool: Sequence[tuple[str, str]], m_max: int, seed: int
) -> list[tuple[tuple[str, str], ...]]:
    """``m_max`` sets of as many demonstrations as the prompt has: its own first, the others drawn
    independently from ``pool`` (seeded by the prompt), each without repeats."""
    k = len(prompt.demonstrations)
    if m_max > 1 and k > len(pool):
        raise ConfigError(
            f"a demonstration set needs {k} pairs, but only {len(pool)} of the task's usable pairs are free of "
            "the prompt's query, dummy queries and demonstrations",
            "lower the number of demonstration sets",
            "travel.contexts in params.yaml",
        )
    rng = random.Random(f"travel-contexts:{seed}:{prompt.index}")
    return [tuple(prompt.demonstrations)] + [tuple(rng.sample(list(pool), k)) for _ in range(m_max - 1)]


class _Rows(Predictions):
    """A task's rows: each predicted token decoded and scored by the task's first-token rule."""

    def __init__(self, task: str, scoring: str, decode) -> None:
        super().__init__(TravelRow, task, scoring, decode)

    def predictions(self, experiment: str, value: int, prompts, method: str, layer: int, tokens) -> None:
        for prompt, token in zip(prompts, tokens, strict=True):
            prediction, correct = self.scored(prompt, token)
            self.add(
                TravelRow(
                    task=self.task,
                    experiment=experiment,
                    value=value,
                    index=prompt.index,
                    method=method,
                    layer=layer,
                    token_id=int(token),
                    prediction=prediction,
                    correct=correct,
                )
            )


def travel_task(
    lm: LoadedModel,
    test: Sequence[Prompt],
    usable: Sequence[UsablePair],
    fmt: PromptFormat,
    layer: int,
    task: str,
    scoring: str,
    ks: Sequence[int] = DEFAULT_KS,
    contexts: Sequence[int] = DEFAULT_CONTEXTS,
    seed: int = 0,
    batch_size: int = 16,
) -> pa.Table:
    """Both experiments on one task's test prompts (see the module's text): one row per prompt, setting
    and method."""
    rows = _Rows(task, scoring, token_decoder(lm))
    queries = [fmt.query.format(x=p.query) for p in test]
    pools = [demonstration_pool(p, usable) for p in test]

    own_k = len(test[0].demonstrations) if test else 0
    own_theta = None  # theta of the study's own prompts, shared by k = own_k and the first set
    if ks:
        nested = [nested_demonstrations(p, pool, max(ks), seed) for p, pool in zip(test, pools)]
        thetas = []
        for k in ks:
            prompts = [dataclasses.replace(p, demonstrations=demos[:k]) for p, demos in zip(test, nested)]
            theta, icl = task_vectors_and_icl(lm, prompts, fmt, batch_size)
            rows.predictions("k", k, test, "icl", NO_LAYER, icl)
            thetas.append(theta[:, layer])
            if k == own_k:
                own_theta = thetas[-1]
        variants = next_token_variants(lm, queries, [Intervention(layer, theta) for theta in thetas], batch_size)
        for k, tokens in zip(ks, variants.tokens, strict=True):
            rows.predictions("k", k, test, "tv", layer, tokens)

    if contexts:
        sets = [demonstration_sets(p, pool, max(contexts), seed) for p, pool in zip(test, pools)]
        per_set = []
        for j in range(max(contexts)):
            if j == 0 and own_theta is not None:
                per_set.append(own_theta)
                continue
            prompts = [dataclasses.replace(p, demonstrations=s[j]) for p, s in zip(test, sets)]
            per_set.append(task_vectors(lm, prompts, fmt, batch_size)[:, layer])
        cumulative = np.cumsum(per_set, axis=0) / np.arange(1, len(per_set) + 1)[:, None, None]
        patches = [Intervention(layer, cumulative[m - 1]) for m in contexts]
        variants = next_token_variants(lm, queries, patches, batch_size)
        for m, tokens in zip(contexts, variants.tokens, strict=True):
            rows.predictions("contexts", m, test, "tv", layer, tokens)
    return rows.table()


def travel_file(
    model_dir: str | os.PathLike[str],
    pairs_files: Sequence[Path],
    prompts: Sequence[Path],
    results: Sequence[Path],
    out: str | os.PathLike[str],
    compute: Compute = DEFAULT_COMPUTE,
    ks: Sequence[int] = DEFAULT_KS,
    contexts: Sequence[int] = DEFAULT_CONTEXTS,
    seed: int = 0,
) -> None:
    """Run both experiments for one model over every task given (files matched by their metadata) and
    write one Parquet file of predictions."""
    ks, contexts = sorted(set(ks)), sorted(set(contexts))
    if any(k < 1 for k in ks) or any(m < 1 for m in contexts):
        raise ConfigError(f"travel.ks and travel.contexts must be positive (got {ks} and {contexts})")
    study = StudyFiles.match(pairs_files, prompts, results)
    lm = compute.load(model_dir)
    tables, layers, study_k = [], {}, {}
    for t in study.tasks(lm):
        start = time.perf_counter()
        rules = t.info.task.rules
        tables.append(
            travel_task(
                lm, t.test, t.usable, t.info.format, t.layer, t.task, rules.scoring, ks, contexts, seed,
                compute.batch_size,
            )
        )  # fmt: skip
        layers[t.task], study_k[t.task] = t.layer, t.info.sizes.k
        log.info("%s %s: layer %d, %.1f s", study.model, t.task, t.layer, time.perf_counter() - start)
    metadata = {
        "analysis": "travel",
        "model_name": study.model,
        "seeds": {task: study.seeds[task] for task in sorted(study.files)},
        "layers": layers,
        "ks": list(ks),
        "contexts": list(contexts),
        "study_k": sorted(set(study_k.values())),
        "draw_seed": seed,
        "dtype": lm.dtype_name,
    }
    store.write_parquet(pa.concat_tables(tables), out, metadata)
