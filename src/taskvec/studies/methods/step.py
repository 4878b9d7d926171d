"""The methods compared on one model's first sampling of every task, under one protocol.

Per task, on the study's own test prompts and scoring:

- **Per prompt** (the test prompt's own demonstrations): ICL and the task vector of Hendel et al.
  (theta from the prompt's demonstrations and dummy queries, at the layer the study chose on dev),
  read from the study's results file.
- **Task level** (one vector per task, the same for every query): each method registered in
  :mod:`taskvec.methods` (none is named here) made from one fixed *pool*: ``pool`` demonstration sets (``k``
  demonstrations and ``dummies`` dummy queries each, the study's sizes) drawn from the task's pairs
  that are neither a test query nor a dev query. Its configuration (block and strength, or strength
  alone for a method at every block) is chosen on the bare dev queries (:meth:`~taskvec.methods.base.Method.choose`),
  and it is judged on the bare test queries at that configuration: the first token by the paper's
  rule, and the strict metric on the greedy answer. Where the task has too few such pairs for one
  set (its test queries cover its pairs: the letter tasks) the task has no pool, and no task-level row.
- **Controls** of every task-level method, at its dev configuration: a random vector of the
  method's norm at every block, another task's vector of the same method, and the vectors made from
  the same pool with its labels *deranged* (each set's outputs permuted so that no demonstration
  keeps its own answer) or drawn at random from the task's answers (both keeping what the method
  chose on the real pool: a function vector's heads, implicit ICL's trained coefficients). ICL runs
  under the same two label controls on each test prompt's own demonstrations: how much of each
  method's gap survives without the mapping is read beside how much of ICL's does.
- **The bare query on dev**, the gates' reference (a method none of whose configurations beats it on
  dev found nothing there), and **the bare test query**, the reference every gap is measured from.
- **KL divergence from ICL**: on each test prompt, KL(ICL's next-token distribution || the bare
  query's, or each task-level method's at its dev configuration), in nats, averaged over the prompts.
- **Costs, counted** (:class:`Meter`): the token positions each method runs through the model's
  blocks, for its one-off work (the vector, then the dev choice) and per test query (the first
  answer token), beside one ICL forward per query and the per-prompt task vector per query (theta
  from the prompt's dummy queries, then the patched bare query), measured on the first test prompts;
  the ratio to one k-shot ICL forward is the cost unit. A pass that starts at a later block (the
  layer sweep's) counts the blocks it runs, a pass over a cached prefix its new positions.
  Seconds, which differ run to run, go to the log, not the file (its bytes are the same on a rerun).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from taskvec import defaults, methods, store
from taskvec.analysis.stats import distribution_gap
from taskvec.architectures import describe
from taskvec.compute import DEFAULT_COMPUTE, Compute
from taskvec.errors import ConfigError
from taskvec.evaluate import score, token_decoder
from taskvec.extract import task_vectors
from taskvec.forward.generate import Continuation, greedy_continue
from taskvec.forward.patched import patched_next_tokens, task_vector_patch
from taskvec.forward.readout import next_tokens
from taskvec.hooks.meter import Meter
from taskvec.loader import task_runs
from taskvec.methods.base import Vectors
from taskvec.methods.pool import derange_labels, kept_labels, random_labels, task_pool
from taskvec.prompts import Prompt, apply_rules, read_prompts
from taskvec.scoring import strict_correct
from taskvec.studies.records import Predictions, column, schema_of
from taskvec.tasks.base import read_pairs

log = logging.getLogger(__name__)

CONTROLS = ("random", "other_task", "deranged_labels", "random_labels")
LABEL_CONTROLS = ("deranged_labels", "random_labels")  # run on ICL too, with the test prompts' own demonstrations
PER_PROMPT = ("icl", "tv_per_prompt")
NO_LAYER = -1
COST_PROMPTS = 8  # test prompts ICL and the per-prompt task vector are run on again to count their cost


@dataclasses.dataclass(frozen=True)
class MethodRow:
    """One test prompt under one method (or control): a row of the comparison's Parquet file."""

    task: str = column(pa.string())
    index: int = column(pa.int32())  # the test prompt's index
    method: str = column(pa.string())  # bare, icl, tv_per_prompt, or a registered method (taskvec.methods)
    control: str = column(pa.string())  # "" for the method itself, else one of CONTROLS
    layer: int = column(pa.int16())  # the block patched (-1: none, or every block)
    strength: float = column(pa.float32())
    token_id: int = column(pa.int64())
    prediction: str = column(pa.string())
    correct: bool = column(pa.bool_())  # the paper's first-token rule
    strict_correct: bool | None = column(pa.bool_())  # the strict metric (null where no answer was generated)


SCHEMA = schema_of(MethodRow)


class _Rows(Predictions):
    """A task's rows: each predicted token decoded and scored by the task's first-token rule."""

    def __init__(self, lm, task: str, scoring: str) -> None:
        super().__init__(MethodRow, task, scoring, token_decoder(lm))

    def predictions(self, prompts, method, tokens, layer=NO_LAYER, strength=0.0, control="", strict=None) -> None:
        strict = strict if strict is not None else [None] * len(prompts)
        for prompt, token, exact in zip(prompts, tokens, strict, strict=True):
            prediction, correct = self.scored(prompt, token)
            self.add(
                MethodRow(
                    task=self.task,
                    index=prompt.index,
                    method=method,
                    control=control,
                    layer=layer,
                    strength=strength,
                    token_id=int(token),
                    prediction=prediction,
                    correct=correct,
                    strict_correct=exact,
                )
            )


def _strict(lm, texts, first, prompts, fmt, batch_size, intervention=None) -> list[bool]:
    ids = greedy_continue(
        lm,
        texts,
        [int(t) for t in first],
        Continuation(fmt.max_answer_tokens, fmt.separator),
        batch_size,
        intervention=intervention,
        answers=[p.strict_answers for p in prompts],
    )
    return [strict_correct(lm.tokenizer.decode(t), p.strict_answers, fmt.separator) for t, p in zip(ids, prompts)]


def compare_methods_file(
    model_dir: str | os.PathLike[str],
    pairs_files: Sequence[Path],
    prompts: Sequence[Path],
    results: Sequence[Path],
    out: str | os.PathLike[str],
    compute: Compute = DEFAULT_COMPUTE,
    pool: int = defaults.POOL,
    seed: int = 0,
    names: Sequence[str] | None = None,
    **settings,
) -> None:
    """Compare the methods (``names``, default every registered one) on every task given (files
    matched by their metadata) and write one row per test prompt, method and control (``out``), the
    pools, choices and costs in its metadata. ``settings``: the methods' own, by name
    (:func:`taskvec.methods.settings`; the authors' defaults for those not given)."""
    files, model, seeds = task_runs(pairs_files, prompts, results)
    chosen_methods = [methods.get(name) for name in (names or methods.names())]
    by_method = methods.by_method(settings)
    method_settings = {m.name: m.settings(by_method.get(m.name)) for m in chosen_methods}
    if len(files) < 2:
        raise ConfigError(f"the other-task control needs at least two tasks; got {sorted(files) or 'none'}")
    lm = compute.load(model_dir)
    batch_size = compute.batch_size
    tasks = sorted(files)
    loaded, meta_tasks = {}, {}
    for task in tasks:
        task_prompts, info = read_prompts(files[task].prompts)
        usable, _ = apply_rules(read_pairs(files[task].pairs), lm.tokenizer, info.task.rules)
        pairs = [(p.input, p.answers[0]) for p in usable]
        sets, n_kept = task_pool(task_prompts, pairs, pool, info.sizes.k, info.sizes.dummies, f"pool:{seed}:{task}")
        answer_space = [y for _, y in pairs]
        labelled = {
            "deranged_labels": derange_labels(sets, seed),
            "random_labels": random_labels(sets, answer_space, seed),
        }
        loaded[task] = (task_prompts, info, sets, labelled, answer_space)
        meta_tasks[task] = {
            "pool_pairs": n_kept,
            "pool_sets": len(sets),
            "labelled_examples": len({d for s in sets for d in s.demonstrations}),
            "answer_space": len(set(answer_space)),
            # the share of the pool's demonstrations each label control leaves with their own answer
            "kept_labels": {name: round(kept_labels(sets, changed), 4) for name, changed in labelled.items()},
            "methods": {},
        }
        if not sets:
            log.warning(
                "%s %s: %d pairs are no dev or test query, fewer than one set of %d needs: no task-level methods",
                model,
                task,
                n_kept,
                info.sizes.k + info.sizes.dummies,
            )

    # every method's vector per task first: the other-task control needs them all
    vectors: dict[tuple[str, str], Vectors] = {}
    relabelled: dict[tuple[str, str, str], Vectors] = {}
    seconds: dict[str, dict] = {task: {} for task in tasks}
    for task in tasks:
        task_prompts, info, sets, labelled, _ = loaded[task]
        for method in chosen_methods if sets else ():
            # the method's own (its one-off cost counted alone)
            with Meter(lm).on() as meter:
                made = method.extract(lm, sets, info.format, batch_size, method_settings[method.name])
            vectors[task, method.name] = made
            # the label controls keep what the method chose on the real pool (its heads, its coefficients)
            for control, changed in labelled.items():
                relabelled[task, method.name, control] = method.extract(
                    lm, changed, info.format, batch_size, method_settings[method.name], keep=made
                )
            meta_tasks[task]["methods"][method.name] = {
                "extract_positions": meter.positions,
                "extract_backward_positions": meter.backward_positions,
                **made.comparison_metadata(),
            }
            training = getattr(made, "training", None)
            if training is not None:  # its seconds go to the log; the rest is the same on a rerun
                log.info("%s %s %s: trained in %.0f s", model, task, method.name, training.seconds)
            seconds[task][method.name] = {"extract": meter.seconds}
        for method in chosen_methods if sets else ():
            agreement = head_agreement(vectors.get((task, method.estimates)), vectors[task, method.name])
            if agreement is not None:
                meta_tasks[task]["head_agreement"] = agreement
                log.info(
                    "%s %s: %s against %s: Spearman %s, recall of the top %d %.2f",
                    model,
                    task,
                    method.name,
                    method.estimates,
                    agreement["spearman"] if agreement["spearman"] is None else round(agreement["spearman"], 2),
                    len(agreement["exact_heads"]),
                    agreement["recall"],
                )

    tables = []
    with_pool = [t for t in tasks if loaded[t][2]]
    for number, task in enumerate(tasks):
        task_prompts, info, sets, _, answer_space = loaded[task]
        fmt = info.format
        rows = _Rows(lm, task, info.task.rules.scoring)
        dev = [p for p in task_prompts if p.split == "dev"]
        test = sorted((p for p in task_prompts if p.split == "test"), key=lambda p: p.index)
        bare_texts = [fmt.query.format(x=p.query) for p in test]
        costs = meta_tasks[task]

        vocab = describe(lm.model).unembedding.weight.shape[0]
        icl_log_probs = np.zeros((len(test), vocab), dtype=np.float32)
        next_tokens(lm, [fmt.render(p.demonstrations, p.query) for p in test], batch_size, log_probs=icl_log_probs)
        log_probs = np.zeros_like(icl_log_probs)
        with Meter(lm).on() as meter:
            bare = next_tokens(lm, bare_texts, batch_size, log_probs=log_probs)
        costs["bare_positions_per_query"] = meter.positions / len(test)
        costs["bare_kl_from_icl"] = float(distribution_gap(icl_log_probs, log_probs)[0].mean())
        costs["dev_queries"] = len(dev)
        dev_texts = [fmt.query.format(x=p.query) for p in dev]
        dev_bare = next_tokens(lm, dev_texts, batch_size)
        # the gates' reference: a method none of whose configurations beats this on dev found nothing
        costs["bare_dev_accuracy"] = (
            float(np.mean([rows.scored(p, t)[1] for p, t in zip(dev, dev_bare)])) if dev else None
        )
        rows.predictions(test, "bare", bare, strict=_strict(lm, bare_texts, bare, test, fmt, batch_size))
        _per_prompt(lm, rows, files[task].results, test, fmt, batch_size, costs, seconds[task])
        # ICL under the label controls, on the test prompts' own demonstrations (the same derangement rule)
        icl_controls = {
            "deranged_labels": derange_labels(test, seed),
            "random_labels": random_labels(test, answer_space, seed),
        }
        for control, changed in icl_controls.items():
            tokens = next_tokens(lm, [fmt.render(p.demonstrations, p.query) for p in changed], batch_size)
            rows.predictions(test, "icl", tokens, control=control)
        costs["icl_kept_labels"] = {
            name: round(kept_labels(test, changed), 4) for name, changed in icl_controls.items()
        }

        others = [t for t in with_pool if t != task]
        other = others[np.random.default_rng([seed, number]).integers(len(others))] if others else None
        costs["other_task"] = other
        for method in chosen_methods if sets else ():
            vector = vectors[task, method.name]
            with Meter(lm).on() as meter:
                choice = method.choose(
                    lm,
                    vector,
                    dev_texts,
                    [p.answers for p in dev],
                    info.task.rules.scoring,
                    batch_size=batch_size,
                )
            record = costs["methods"][method.name]
            seconds[task][method.name]["choice"] = meter.seconds
            record.update(choice_positions=meter.positions, **choice.record())
            # the vectors the choice settles on (a function vector's head count), and what else it sets
            vector, extra = method.settle(vector, choice)
            patch = method.intervention(vector, choice.layer, choice.strength, len(test), **extra)
            with Meter(lm).on() as meter:
                tokens = patched_next_tokens(lm, bare_texts, patch, batch_size, log_probs=log_probs)
            record["positions_per_query"] = meter.positions / len(test)
            record["kl_from_icl"] = float(distribution_gap(icl_log_probs, log_probs)[0].mean())
            seconds[task][method.name]["per_query"] = meter.seconds / len(test)
            during = method.intervention(vector, choice.layer, choice.strength, len(test), True, **extra)
            strict = _strict(lm, bare_texts, tokens, test, fmt, batch_size, during)
            rows.predictions(test, method.name, tokens, choice.layer, choice.strength, strict=strict)
            controls = {
                "random": method.random_like(vector, seed + number),
                "other_task": method.settle(vectors[other, method.name], choice)[0] if other else None,
                **{
                    control: method.settle(relabelled[task, method.name, control], choice)[0]
                    for control in LABEL_CONTROLS
                },
            }
            for control, values in controls.items():
                if values is None:
                    continue
                patch = method.intervention(values, choice.layer, choice.strength, len(test), **extra)
                control_tokens = patched_next_tokens(lm, bare_texts, patch, batch_size)
                rows.predictions(test, method.name, control_tokens, choice.layer, choice.strength, control=control)
            log.info(
                "%s %s %s: %s, strength %g (%d configurations), dev %.2f",
                model,
                task,
                method.name,
                "every block" if choice.layer < 0 else f"block {choice.layer}",
                choice.strength,
                choice.configurations,
                choice.accuracy,
            )
        tables.append(rows.table())
        log.info("%s %s: seconds %s", model, task, {k: _rounded(v) for k, v in seconds[task].items()})

    n_layers = int(next(iter(vectors.values())).values.shape[0]) if vectors else None
    metadata = {
        "analysis": "methods",
        "model_name": model,
        "seeds": {task: seeds[task] for task in tasks},
        "pool": pool,
        "seed": seed,
        **{
            field: value for m in chosen_methods for field, value in dataclasses.asdict(method_settings[m.name]).items()
        },
        "k": loaded[tasks[0]][1].sizes.k,
        "n_layers": n_layers,
        "vocabulary_size": int(describe(lm.model).unembedding.weight.shape[0]),  # a uniform guess's loss is its log
        "dtype": lm.dtype_name,
        "methods": {m.name: m.description(n_layers) for m in chosen_methods},
        "tasks": meta_tasks,
    }
    store.write_parquet(pa.concat_tables(tables), out, metadata)


def head_agreement(exact: Vectors | None, estimate: Vectors | None) -> dict | None:
    """How a method's head effects agree with those of the method it estimates on the same prompts
    (attribution patching against the exact scan): the Spearman rank correlation over all heads, the
    share of the exact top heads among the estimate's top heads (as many as the method keeps), and
    both effects per head (``[n_layers][n_heads]``) for the figure; None where either has no ranked
    heads."""
    from scipy import stats as scipy_stats

    a = getattr(exact, "average_indirect_effect", None)
    b = getattr(estimate, "average_indirect_effect", None)
    if a is None or b is None:
        return None
    constant = np.ptp(a) == 0 or np.ptp(b) == 0  # no ranking to correlate
    rho = None if constant else float(scipy_stats.spearmanr(a.reshape(-1), b.reshape(-1)).statistic)
    top = {tuple(h) for h in exact.heads}
    return {
        "spearman": rho,
        "recall": len(top & {tuple(h) for h in estimate.heads}) / len(top),
        "exact_heads": [list(h) for h in exact.heads],
        "attribution_heads": [list(h) for h in estimate.heads],
        "exact_effects": np.round(a.astype(np.float64), 6).tolist(),
        "attribution_effects": np.round(b.astype(np.float64), 6).tolist(),
        "prompts": exact.prompts,
    }


def _rounded(value):
    return {k: round(v, 4) for k, v in value.items()} if isinstance(value, dict) else round(value, 4)


def _per_prompt(
    lm, rows: _Rows, results_path: Path, test: Sequence[Prompt], fmt, batch_size: int, costs: dict, seconds: dict
) -> None:
    """ICL and the per-prompt task vector on the test prompts, as the study's results file holds them
    (first token and strict metric); and the cost per query of each, counted here on the first
    :data:`COST_PROMPTS` of the same prompts."""
    results = store.read_parquet(results_path)
    scores, table = score(results), results.to_pydict()
    keyed = {
        (m, i): t
        for s, m, i, t, lay in zip(table["split"], table["method"], table["index"], table["token_id"], table["layer"])
        if s == "test" and (m == "icl" or lay == scores.best_layer)
    }
    for method, name, correct_strict in (
        ("icl", "icl", scores.icl_strict_correct),
        ("tv", "tv_per_prompt", scores.tv_strict_correct),
    ):
        tokens = [keyed[method, p.index] for p in test]
        layer = NO_LAYER if method == "icl" else scores.best_layer
        rows.predictions(test, name, tokens, layer, strict=list(correct_strict) or None)
    some = list(test[:COST_PROMPTS])
    with Meter(lm).on() as icl:
        next_tokens(lm, [fmt.render(p.demonstrations, p.query) for p in some], batch_size)
    with Meter(lm).on() as tv:
        thetas = task_vectors(lm, some, fmt, batch_size)[:, scores.best_layer]
        patch = task_vector_patch([scores.best_layer] * len(some), thetas)
        patched_next_tokens(lm, [fmt.query.format(x=p.query) for p in some], patch, batch_size)
    costs["icl_positions_per_query"] = icl.positions / len(some)
    costs["tv_per_prompt_positions_per_query"] = tv.positions / len(some)
    seconds["icl"] = {"per_query": icl.seconds / len(some)}
    seconds["tv_per_prompt"] = {"per_query": tv.seconds / len(some)}
