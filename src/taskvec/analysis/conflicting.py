"""Conflicting tasks: the demonstrations of task A with the task vector of task B patched in.

If theta carries the task, the patched model should follow B although every demonstration shows A.
Each of A's test prompts (its demonstrations and query) runs with the theta of one of B's test
prompts replacing the last token's residual stream at B's chosen layer; the prediction is scored
against A's answer and against B's answer for the same query, by the paper's first-token rule of
each task and by the strict metric (greedy generation to the separator, exact match). The ICL
first-token predictions without a patch come from A's results file; their generations run here in
full, since they are scored against B's answers too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from taskvec import store
from taskvec.analysis.pairs import PAIRS, conflict_summary
from taskvec.compute import DEFAULT_COMPUTE, Compute
from taskvec.errors import ConfigError
from taskvec.evaluate import read_layer_choice, read_results
from taskvec.extract import read_activations
from taskvec.forward.batching import with_batch_backoff
from taskvec.forward.generate import Continuation, greedy_continue
from taskvec.forward.patched import patched_next_tokens, task_vector_patch
from taskvec.loader import Run, task_runs
from taskvec.models import LoadedModel
from taskvec.prompts import read_prompts
from taskvec.scoring import first_token_correct, strict_correct
from taskvec.tasks.base import read_pairs

log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("task_a", pa.string()),
        ("task_b", pa.string()),
        ("index", pa.int32()),
        ("query", pa.string()),
        ("layer_b", pa.int16()),
        ("icl_prediction", pa.string()),
        ("patched_prediction", pa.string()),
        ("b_defined", pa.bool_()),  # B has an answer for this query (else it counts for A only)
        ("icl_correct_a", pa.bool_()),
        ("icl_correct_b", pa.bool_()),
        ("patched_correct_a", pa.bool_()),
        ("patched_correct_b", pa.bool_()),
        ("icl_generated", pa.string()),
        ("patched_generated", pa.string()),
        ("icl_strict_a", pa.bool_()),
        ("icl_strict_b", pa.bool_()),
        ("patched_strict_a", pa.bool_()),
        ("patched_strict_b", pa.bool_()),
    ]
)


def conflict_pair(lm: LoadedModel, a: Run, b: Run, task_a: str, task_b: str, batch_size: int = 16) -> pa.Table:
    """One row per test prompt of A: ICL and ICL + theta_B predictions, scored against A and B."""
    prompts_a, info_a = read_prompts(a.prompts)
    fmt = info_a.format
    test_a = [p for p in prompts_a if p.split == "test"]
    results_a = read_results(a.results)[0].to_pydict()
    icl = {
        i: (pred, token)
        for i, split, method, pred, token in zip(
            results_a["index"], results_a["split"], results_a["method"], results_a["prediction"], results_a["token_id"]
        )
        if split == "test" and method == "icl"
    }
    info_b = read_results(b.results)[1]
    layer_b = read_layer_choice(b.results).layer
    rule_b = info_b.task.rules.scoring
    rule_a = info_a.task.rules.scoring
    vectors_b, _ = read_activations(b.activations)
    thetas_b = [v[layer_b] for (split, _), v in sorted(vectors_b.items()) if split == "test"]
    # B's answers for A's query; the two tasks may render with and without a leading space
    answers_b = {pair.input.strip(): pair.outputs for pair in read_pairs(b.pairs)}

    texts = [fmt.render(p.demonstrations, p.query) for p in test_a]
    patches = np.stack([thetas_b[i % len(thetas_b)] for i in range(len(test_a))])
    layers = [layer_b] * len(test_a)

    until = Continuation(fmt.max_answer_tokens, fmt.separator)

    def runs(size: int) -> tuple[list[list[int]], list[list[int]]]:
        # Whole generations, scored against both tasks' answers (the results file's ICL generations
        # stop once they cannot become one of A's answers).
        unpatched = greedy_continue(lm, texts, [icl[p.index][1] for p in test_a], until, size)
        patch = task_vector_patch(layers, patches)
        first = patched_next_tokens(lm, texts, patch, size)
        return unpatched, greedy_continue(lm, texts, first.tolist(), until, size, intervention=patch)

    (icl_generations, generations), _ = with_batch_backoff(
        runs, batch_size, f"the passes of {task_a} with and without theta of {task_b}"
    )
    rows = {name: [] for name in SCHEMA.names}
    for prompt, tokens, icl_tokens in zip(test_a, generations, icl_generations):
        patched = lm.tokenizer.decode(tokens[:1])
        patched_text = lm.tokenizer.decode(tokens)
        b_answers = answers_b.get(prompt.query.strip(), ())
        unpatched, unpatched_text = icl[prompt.index][0], lm.tokenizer.decode(icl_tokens)
        values = (
            task_a,
            task_b,
            prompt.index,
            prompt.query,
            layer_b,
            unpatched,
            patched,
            bool(b_answers),
            first_token_correct(unpatched, prompt.answers, rule_a),
            first_token_correct(unpatched, b_answers, rule_b),
            first_token_correct(patched, prompt.answers, rule_a),
            first_token_correct(patched, b_answers, rule_b),
            unpatched_text,
            patched_text,
            strict_correct(unpatched_text, prompt.strict_answers, fmt.separator),
            strict_correct(unpatched_text, b_answers, fmt.separator),
            strict_correct(patched_text, prompt.strict_answers, fmt.separator),
            strict_correct(patched_text, b_answers, fmt.separator),
        )
        for name, value in zip(SCHEMA.names, values):
            rows[name].append(value)
    return pa.table(rows, schema=SCHEMA)


def conflicting_tasks_file(
    model_dir: str | os.PathLike[str],
    pairs_files: Sequence[Path],
    prompts: Sequence[Path],
    activations: Sequence[Path],
    results: Sequence[Path],
    pairs: Sequence[tuple[str, str]],
    out: str | os.PathLike[str],
    compute: Compute = DEFAULT_COMPUTE,
) -> None:
    """Run every pair for one model, from each task's files (matched by their metadata), and write
    one Parquet file."""
    unknown = [pair for pair in pairs if pair not in PAIRS]
    if unknown or not pairs:
        raise ConfigError(f"conflicting-task pairs must be among the paper's: {PAIRS}; got {list(pairs)}")
    files, model, seeds = task_runs(pairs_files, prompts, results, activations)
    missing = sorted({task for pair in pairs for task in pair} - set(files))
    if missing:
        raise ConfigError(
            f"no complete files (pairs, prompts, activations and results) of {', '.join(missing)}; "
            "give each task of the pairs"
        )
    lm = compute.load(model_dir)
    tables = []
    for task_a, task_b in pairs:
        table = conflict_pair(lm, files[task_a], files[task_b], task_a, task_b, compute.batch_size)
        summary = conflict_summary(table)
        log.info(
            "%s: %s demonstrations + %s theta: follows A %.2f, follows B %.2f (ICL alone: %.2f / %.2f)",
            model,
            task_a,
            task_b,
            summary["patched_a"],
            summary["patched_b"],
            summary["icl_a"],
            summary["icl_b"],
        )
        tables.append(table)
    metadata = {
        "analysis": "conflicting_tasks",
        "model_name": model,
        "seeds": {task: seeds[task] for task in sorted({t for pair in pairs for t in pair})},
        "pairs": [list(p) for p in pairs],
        "dtype": lm.dtype_name,
    }
    store.write_parquet(pa.concat_tables(tables), out, metadata)
