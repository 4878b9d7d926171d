"""How far a task vector travels across prompt formats: ICL and the task vector in each of several
formats, and theta extracted in one format patched into the bare query of another.

For one model, on the first sampling of each task's splits: the study's test prompts (the same
demonstrations, queries and dummy queries), written in each format, at the layer the study chose on
dev in the study's format (one layer per task for every format, so that only the writing changes).

A format is a demonstration template ending in ``{y}``; its query is the template up to ``{y}``
without the spaces before it (``{x} -> {y}`` asks ``{x} ->``), and the answer a model should continue
with is those spaces and the output (`` dog``). Spacing follows the template: the study writes inputs
and outputs with a leading space where its rule chose one (the paper's code, for the paper's format,
which puts no space before either); a format that puts whitespace (or the start of a line) before
``{x}`` or ``{y}`` writes it without that space, so no format doubles a space. In the study's own
format the prompts are then exactly the study's.

Every format is scored on every test query with the task's first-token rule against the study's
answers (the rule strips whitespace, so the answer's spacing does not change the score). What the
spacing does change is whether the answer is one token as the format writes it (a word after a tab
may need two, where the study's leading-space form needs one): that is recorded per query
(``one_token``), and so is what a wrong prediction copies (``copies``: the query's input, or another
token of the bare query such as the ``A`` of ``A:``).

Per format B and test prompt: ICL (the prompt written in B), the bare query of B unpatched, and theta
of the prompt written in each format A patched into B's bare query (A = B is B's own task vector).
All patches of one bare query share one prefix pass (:func:`taskvec.forward.patched.next_token_variants`).

Two more conditions test what the first two cannot tell apart:

- *each format's own layer* (``tv_own_layer``): the layer chosen on the dev prompts written in that
  format (the study's rule: best dev accuracy, ties to the earliest), so that a format is not judged
  at a layer chosen in another; the dev curve of each format goes into the file's metadata;
- *a token before the input* (``bare_prefixed``, ``tv_prefixed``): the bare query written after
  ``QUERY_PREFIX`` (a newline: neutral text, as the separator between demonstrations is), patched with
  the format's own theta at the study's layer. Where a format's bare query begins with its input, the
  input then no longer sits at the first position; the difference to ``tv`` measures how much of that
  format's collapse a token before the input recovers.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from taskvec import store
from taskvec.analysis.first_sampling import StudyFiles
from taskvec.compute import DEFAULT_COMPUTE, Compute
from taskvec.errors import ConfigError
from taskvec.evaluate import LayerChoice, token_decoder
from taskvec.extract import task_vectors, task_vectors_and_icl
from taskvec.forward.patched import next_token_variants, patched_sweep
from taskvec.hooks.intervention import Intervention
from taskvec.models import LoadedModel
from taskvec.prompts import Prompt, PromptFormat, is_one_token
from taskvec.scoring import first_token_correct
from taskvec.studies.records import Predictions, column, schema_of

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Format:
    """A named prompt format: the demonstration template (``{x}`` before ``{y}``, ``{y}`` last) and
    the text between demonstrations."""

    name: str
    demonstration: str
    separator: str = "\n"

    def __post_init__(self) -> None:
        d = self.demonstration
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"format name {self.name!r}: use letters, digits, '_' and '-'")
        if d.count("{x}") != 1 or d.count("{y}") != 1 or not d.endswith("{y}") or d.index("{x}") > d.index("{y}"):
            raise ConfigError(
                f"format {self.name}: the demonstration template {d!r} must hold {{x}} once and end with {{y}}",
                'write it as "<text>{x}<text>{y}", for example "Q: {x}\\nA: {y}"',
            )
        if not self.separator:
            raise ConfigError(f"format {self.name}: the separator between demonstrations is empty")
        try:
            d.format(x="", y="")
        except (KeyError, IndexError, ValueError) as error:
            raise ConfigError(
                f"format {self.name}: the template {d!r} has braces other than {{x}} and {{y}} ({error})",
                "write a literal brace as {{ or }}",
            ) from None

    @property
    def query(self) -> str:
        """The bare query's template: the demonstration up to ``{y}``, without the spaces before it."""
        return self.demonstration[: -len("{y}")].rstrip(" ")

    @property
    def answer_space(self) -> str:
        """The spaces the template puts before the answer (the answer's part of the continuation)."""
        before = self.demonstration[: -len("{y}")]
        return before[len(before.rstrip(" ")) :]

    def prompt_format(self, max_answer_tokens: int = 10) -> PromptFormat:
        return PromptFormat(self.demonstration, self.query, self.separator, max_answer_tokens)

    def keeps_space(self, placeholder: str) -> bool:
        """Whether ``{x}`` or ``{y}`` is written with the study's leading space: only where the
        template puts no whitespace and no line start before it."""
        at = self.demonstration.index(placeholder)
        return at > 0 and not self.demonstration[at - 1].isspace()

    def describe(self) -> dict:
        return dataclasses.asdict(self) | {"query": self.query}


# The paper's format and four others users write (the list); `travel.formats` in params.yaml.
DEFAULT_FORMATS = (
    Format("paper", "example:{x}->{y}", "\n"),
    Format("arrow", "{x} -> {y}", "\n"),
    Format("qa", "Q: {x}\nA: {y}", "\n\n"),
    Format("input_output", "input: {x} output: {y}", "\n"),
    Format("tab", "{x}\t{y}", "\n"),
)


@dataclasses.dataclass(frozen=True)
class FormatRow:
    """One test prompt's bare query (or ICL prompt) in one target format, with one source format's
    theta or none: a row of the study's Parquet file."""

    task: str = column(pa.string())
    target: str = column(pa.string())  # the format the prompt or bare query is written in
    source: str = column(pa.string())  # the format theta was extracted in ("" for ICL and the bare query)
    # "icl", "bare" (the bare query, unpatched), "tv", "tv_own_layer" (at the format's own dev layer),
    # "bare_prefixed" and "tv_prefixed" (the bare query after QUERY_PREFIX)
    method: str = column(pa.string())
    index: int = column(pa.int32())  # the test prompt's index in the study's prompts file
    layer: int = column(pa.int32())  # the block theta is patched after (-1 for ICL and the bare query)
    token_id: int = column(pa.int64())
    prediction: str = column(pa.string())
    correct: bool = column(pa.bool_())  # the task's first-token rule against the study's answers
    one_token: bool = column(pa.bool_())  # an answer is one token as the target format writes it after its query
    # a wrong prediction that is the start of the input ("input"), another token of the bare query
    # ("query"), or neither ("")
    copies: str = column(pa.string())


SCHEMA = schema_of(FormatRow)
NO_LAYER = -1
QUERY_PREFIX = "\n"  # the neutral text put before the bare query in the prefixed conditions


def _unspaced(text: str, spaced: bool) -> str:
    return text[1:] if spaced and text.startswith(" ") else text


def write_prompt(prompt: Prompt, fmt: Format, leading_space: bool) -> Prompt:
    """``prompt`` (the study's strings, with its leading space where it chose one) written for
    ``fmt``: without that space wherever the template puts whitespace or a line start before it."""

    def x(text: str) -> str:
        return text if fmt.keeps_space("{x}") else _unspaced(text, leading_space)

    def y(text: str) -> str:
        return text if fmt.keeps_space("{y}") else _unspaced(text, leading_space)

    return dataclasses.replace(
        prompt,
        demonstrations=tuple((x(a), y(b)) for a, b in prompt.demonstrations),
        query=x(prompt.query),
        dummies=tuple(x(d) for d in prompt.dummies),
        answers=tuple(y(a) for a in prompt.answers),
        all_answers=tuple(y(a) for a in prompt.strict_answers),
    )


def answer_is_one_token(prompt: Prompt, fmt: Format, tokenizer) -> bool:
    """Whether one of the written prompt's first-token answers is one token where ``fmt`` puts it."""
    return any(is_one_token(tokenizer, fmt.answer_space + a) for a in prompt.answers)


def copies(prediction: str, correct: bool, query_input: str, query_tokens: Sequence[str]) -> str:
    """What a wrong prediction copies from the bare query: the start of its input (``"input"``),
    another of its tokens (``"query"``), or nothing (``""``)."""
    token = prediction.strip()
    if correct or not token:
        return ""
    if query_input.strip().startswith(token):
        return "input"
    return "query" if token in {t.strip() for t in query_tokens} else ""


def formats_task(
    lm: LoadedModel,
    test: Sequence[Prompt],
    formats: Sequence[Format],
    layer: int,
    task: str,
    scoring: str,
    leading_space: bool,
    max_answer_tokens: int = 10,
    batch_size: int = 16,
    own_layers: dict[str, int] | None = None,
) -> pa.Table:
    """ICL, the bare query and every format's theta in every format's bare query, on one task's test
    prompts (see the module's text): one row per prompt, target format, source format and method;
    ``own_layers`` (per format, its own dev layer; default: ``layer``) for ``tv_own_layer``."""
    decode = token_decoder(lm)
    written = {f.name: [write_prompt(p, f, leading_space) for p in test] for f in formats}
    read = {f.name: [query_tokens(lm, f, p.query) for p in written[f.name]] for f in formats}
    one = {f.name: [answer_is_one_token(p, f, lm.tokenizer) for p in written[f.name]] for f in formats}
    rows = Predictions(FormatRow, task, scoring, decode)

    def add(target: Format, source: str, method: str, layer_: int, tokens) -> None:
        for i, (prompt, token) in enumerate(zip(written[target.name], tokens, strict=True)):
            prediction, ok = rows.scored(prompt, token)
            rows.add(
                FormatRow(
                    task=task,
                    target=target.name,
                    source=source,
                    method=method,
                    index=prompt.index,
                    layer=layer_,
                    token_id=int(token),
                    prediction=prediction,
                    correct=ok,
                    one_token=one[target.name][i],
                    copies=copies(prediction, ok, prompt.query, read[target.name][i]),
                )
            )

    thetas, every_layer = {}, {}
    for f in formats:
        theta, icl = task_vectors_and_icl(lm, written[f.name], f.prompt_format(max_answer_tokens), batch_size)
        thetas[f.name], every_layer[f.name] = theta[:, layer], theta
        add(f, "", "icl", NO_LAYER, icl)
    for target in formats:
        queries = [target.query.format(x=p.query) for p in written[target.name]]
        variants = next_token_variants(lm, queries, [Intervention(layer, thetas[f.name]) for f in formats], batch_size)
        add(target, "", "bare", NO_LAYER, variants.plain)
        for source, tokens in zip(formats, variants.tokens, strict=True):
            add(target, source.name, "tv", layer, tokens)
        own = (own_layers or {}).get(target.name, layer)
        mine = [Intervention(own, every_layer[target.name][:, own])]
        add(target, target.name, "tv_own_layer", own, next_token_variants(lm, queries, mine, batch_size).tokens[0])
        prefixed = [QUERY_PREFIX + q for q in queries]
        variants = next_token_variants(lm, prefixed, [Intervention(layer, thetas[target.name])], batch_size)
        add(target, "", "bare_prefixed", NO_LAYER, variants.plain)
        add(target, target.name, "tv_prefixed", layer, variants.tokens[0])
    return rows.table()


def own_layer_curves(
    lm: LoadedModel,
    dev: Sequence[Prompt],
    formats: Sequence[Format],
    scoring: str,
    leading_space: bool,
    max_answer_tokens: int = 10,
    batch_size: int = 16,
) -> dict[str, LayerChoice]:
    """Per format, the layer the study's rule chooses on the dev prompts written in it (theta of each
    dev prompt patched into its own bare query after every block), with the dev curve."""
    decode = token_decoder(lm)
    chosen = {}
    for f in formats if dev else ():
        written = [write_prompt(p, f, leading_space) for p in dev]
        theta = task_vectors(lm, written, f.prompt_format(max_answer_tokens), batch_size)
        queries = [f.query.format(x=p.query) for p in written]
        swept = patched_sweep(lm, queries, theta, batch_size=batch_size)
        curve = [
            float(sum(first_token_correct(decode(t), p.answers, scoring) for t, p in zip(column, written)) / len(dev))
            for column in swept.T
        ]
        chosen[f.name] = LayerChoice.of_curve(curve)
    return chosen


def query_tokens(lm: LoadedModel, fmt: Format, query: str) -> list[str]:
    """The bare query of ``fmt`` for input ``query``, token by token as the model reads it (with the
    tokenizer's own special tokens, such as a beginning-of-text token)."""
    return [lm.tokenizer.decode([i]) for i in lm.tokenizer.encode(fmt.query.format(x=query))]


def tokens_around_input(lm: LoadedModel, fmt: Format, query: str) -> tuple[int, int]:
    """How many tokens of the bare query come before its input and after it (special tokens included)."""
    prefix = fmt.query[: fmt.query.index("{x}")]
    before = len(lm.tokenizer.encode(prefix))
    through = len(lm.tokenizer.encode(prefix + query))
    return before, len(lm.tokenizer.encode(fmt.query.format(x=query))) - through


def formats_file(
    model_dir: str | os.PathLike[str],
    pairs_files: Sequence[Path],
    prompts: Sequence[Path],
    results: Sequence[Path],
    out: str | os.PathLike[str],
    compute: Compute = DEFAULT_COMPUTE,
    formats: Sequence[Format | Sequence[str]] | None = None,
) -> None:
    """Run the format study for one model over every task given (files matched by their metadata) and
    write one Parquet file of predictions; its metadata records each format, the layer per task and,
    for the first test query of each task, each format's bare query token by token and how many of its
    tokens come before and after the input."""
    formats = [f if isinstance(f, Format) else Format(*f) for f in (DEFAULT_FORMATS if formats is None else formats)]
    names = [f.name for f in formats]
    if len(set(names)) != len(names):
        raise ConfigError(f"format names repeat: {names}", "give each format its own name")
    if not formats:
        raise ConfigError("no prompt format given", "give at least one format", "travel.formats in params.yaml")
    study = StudyFiles.match(pairs_files, prompts, results)
    lm = compute.load(model_dir)
    tables, layers, examples, study_formats, own = [], {}, {}, set(), {}
    for t in study.tasks(lm):
        start = time.perf_counter()
        info, test = t.info, t.test
        rules = (info.task.rules.scoring, info.leading_space, info.format.max_answer_tokens, compute.batch_size)
        choices = own_layer_curves(lm, t.dev, formats, *rules)
        own[t.task] = {name: choice.to_dict() for name, choice in choices.items()}
        tables.append(
            formats_task(
                lm, test, formats, t.layer, t.task, *rules,
                own_layers={name: choice.layer for name, choice in choices.items()},
            )
        )  # fmt: skip
        layers[t.task] = t.layer
        study_formats.add((info.format.demonstration, info.format.query, info.format.separator))
        if test:
            queries = {f.name: write_prompt(test[0], f, info.leading_space).query for f in formats}
            examples[t.task] = {
                f.name: {
                    "tokens": query_tokens(lm, f, queries[f.name]),
                    "around_input": list(tokens_around_input(lm, f, queries[f.name])),
                }
                for f in formats
            }
        log.info("%s %s: layer %d, %.1f s", study.model, t.task, t.layer, time.perf_counter() - start)
    metadata = {
        "analysis": "formats",
        "model_name": study.model,
        "seeds": {task: study.seeds[task] for task in sorted(study.files)},
        "layers": layers,
        "own_layers": own,  # per task and format: the layer chosen on dev in that format, and its dev curve
        "query_prefix": QUERY_PREFIX,
        "formats": [f.describe() for f in formats],
        "study_format": [list(s) for s in sorted(study_formats)],
        "query_tokens": examples,
        "dtype": lm.dtype_name,
    }
    store.write_parquet(pa.concat_tables(tables), out, metadata)
