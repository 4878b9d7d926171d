"""Task vectors for one-off use: from a file of input/output pairs to a vector file, and from a vector
file to patched predictions on your own queries, without a study.

    from taskvec import api
    lm = api.load("packaged:smollm2-135m")
    vector = api.task_vector(lm, api.read_pairs("antonyms.jsonl"))
    print(api.apply(lm, vector, ["hot", "tall"]))

How the vector is made (the study's extraction, averaged over several contexts): the pairs are put in
a fixed order drawn from ``seed``; with ``layer="auto"`` a quarter of them (at least 4) are held out.
Each of ``contexts`` prompts then writes ``k`` demonstrations and ``dummies`` dummy queries drawn from
the other pairs in the prompt format, and theta after every block is the last token's residual stream
averaged over the dummy queries and the contexts. With ``layer="auto"`` the held-out pairs' bare
queries are patched with theta after each block in turn and the block of best first-token accuracy
is kept (ties: the earliest), as the study chooses it on dev; the accuracies are recorded in the
file, beside those of the bare held-out queries and of ICL on them, and where no block beats the bare
query a warning says so (:attr:`TaskVector.works` is then False). Applying the vector replaces the
bare query's last-token residual stream after that block with theta and generates greedily to the
format's separator, as the study's strict metric does.

``method`` names another way to turn the same demonstration sets into a vector
(:mod:`taskvec.methods` lists them: ``mean_difference`` adds the scaled mean difference the demonstrations make
to the stream, its strength chosen with the block; ``in_context_vector`` turns the MLP output of every
block, its strength chosen on the held-out pairs, and has no block: its file's layer is -1); the file
records the method, and :func:`apply` applies whichever it holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from taskvec import defaults, methods
from taskvec.errors import ArtifactError, ConfigError
from taskvec.methods.base import Method, Vectors
from taskvec.models import PACKAGED_PREFIX, LoadedModel
from taskvec.prompts import Prompt, PromptFormat
from taskvec.tasks.base import Pair

log = logging.getLogger(__name__)

VECTOR_TENSOR = "vectors"  # [n_layers, hidden]: theta after every block
METADATA_KEY = "taskvec"  # the file's metadata: one JSON object
FORMAT_VERSION = 1
CACHE_ENV = "TASKVEC_CACHE"


def cache_dir() -> Path:
    """Where models named by a packaged name or a Hugging Face id are converted on first use:
    ``$TASKVEC_CACHE`` or ``~/.cache/taskvec``, under ``models/``."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "taskvec"
    return Path(root) / "models"


def load(source: str | os.PathLike[str], device: str = "auto", dtype: str = "auto", threads: int = 0) -> LoadedModel:
    """A model from a directory (one written by `taskvec convert-model`, or any local Hugging Face model
    directory with safetensors weights), a packaged name (``packaged:smollm2-135m``) or a Hugging Face id;
    the last two are converted once into :func:`cache_dir` and loaded from there afterwards."""
    from taskvec.models import convert_model, load_model

    path = Path(source).expanduser()
    if path.is_dir():
        return load_model(path, device=device, dtype=dtype, threads=threads)
    source = str(source)
    if not (source.startswith(PACKAGED_PREFIX) or re.fullmatch(r"[\w.-]+(/[\w.-]+)?", source)) or path.exists():
        raise ArtifactError(
            f"model {source} is neither a model directory, a packaged name nor a Hugging Face id",
            "give a model directory, packaged:NAME (`taskvec models`) or a Hugging Face id such as org/name",
        )
    target = cache_dir() / re.sub(r"[^\w.-]+", "--", source)
    if not target.is_dir():
        log.info("converting %s into %s (once)", source, target)
        convert_model(source, target)
    return load_model(target, device=device, dtype=dtype, threads=threads)


def read_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    """Input/output pairs from a task file, the format of the study's own tasks: JSON Lines, one
    ``{"input": "hot", "output": "cold"}`` per line (``output`` may list several valid answers, the first
    shown in demonstrations), or CSV with ``input`` and ``output`` columns (answers split by ``|``)."""
    from taskvec.tasks.custom import read_task_file

    return read_task_file(path)


@dataclasses.dataclass(frozen=True)
class TaskVector:
    """theta after every block (``vectors``, ``[n_layers, hidden]``), the block it is patched after
    (``layer``), and how it was made (``metadata``: the model, the prompt format, the method, the layer
    choice). Made by another method (:attr:`method`), ``vectors`` are that method's, one per block."""

    vectors: np.ndarray
    layer: int
    metadata: dict

    @property
    def theta(self) -> np.ndarray:
        if self.layer < 0:
            raise ConfigError(f"a {self.method.name} vector goes into every block: it has no one block's theta")
        if self.method.layers != "one":
            raise ConfigError(
                f"a {self.method.name} vector goes into blocks 0 to {self.layer} at its site: it has no one block's "
                "theta"
            )
        return self.vectors[self.layer]

    @property
    def method(self) -> Method:
        return methods.get(self.metadata.get("method", "task_vector"))  # files from before methods: theta

    @property
    def chosen(self) -> dict:
        """What else the method chose beside block and strength (its own settings, by name)."""
        return dict(self.metadata.get("chosen", {}))

    def method_vectors(self) -> Vectors:
        """The rows as the method's vectors (with what else the file records of them)."""
        return self.method.from_rows(self.vectors, self.metadata)

    @property
    def strength(self) -> float:
        return float(self.metadata.get("strength", 1.0))

    @property
    def works(self) -> bool | None:
        """Whether the chosen block's theta beats the bare query on the held-out pairs (``layer="auto"``);
        None where the layer was given and nothing was held out to tell."""
        return self.metadata["layer_choice"].get("beats_bare")

    @property
    def format(self) -> PromptFormat:
        return PromptFormat(**self.metadata["format"])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a safetensors file (atomically: on any error nothing is left at ``path``)."""
        from safetensors.numpy import save_file

        from taskvec import store

        path = Path(path)
        # one metadata entry: safetensors writes several in no fixed order, and the file must not change
        # from run to run
        header = {METADATA_KEY: json.dumps({**self.metadata, "layer": self.layer}, sort_keys=True)}
        with store.atomic_path(path) as tmp:
            save_file({VECTOR_TENSOR: np.ascontiguousarray(self.vectors, dtype=np.float32)}, str(tmp), metadata=header)
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o666 & ~umask)  # safetensors creates its files readable by their owner alone
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TaskVector:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"vector file {path} does not exist", "make one with `taskvec vector`")
        try:
            from safetensors import safe_open

            with safe_open(str(path), "numpy") as handle:
                header = handle.metadata() or {}
            vectors = load_file(str(path))[VECTOR_TENSOR]
            metadata = json.loads(header[METADATA_KEY])
            layer = int(metadata.pop("layer"))
            missing = [key for key in ("format", "model") if key not in metadata]
            if missing:
                raise KeyError(f"no {' and no '.join(missing)} in its metadata")
        except (SafetensorError, KeyError, ValueError, OSError) as error:
            raise ArtifactError(
                f"{path} is not a task-vector file written by `taskvec vector` ({error})",
                "make one with `taskvec vector`",
            ) from error
        method = methods.registry().get(metadata.get("method", "task_vector"))  # an unknown one: refused on use
        every = method is not None and method.every_layer
        if vectors.ndim != 2 or not (layer == -1 if every else 0 <= layer < len(vectors)):
            raise ArtifactError(f"{path}: vectors of shape {vectors.shape} with layer {layer}", "remake it")
        return cls(vectors, layer, metadata)


def model_identity(lm: LoadedModel) -> dict:
    """What a vector must match to be patched into a model: its source and its residual stream's shape."""
    from taskvec.architectures import describe

    provenance = lm.provenance
    return {
        "source": str(provenance.get("source")),
        "file_sha256": provenance.get("file_sha256"),
        "model_type": lm.model.config.model_type,
        "n_layers": describe(lm.model).n_layers,
        "hidden_size": int(lm.model.config.hidden_size),
    }


def _check_model(vector: TaskVector, lm: LoadedModel, where: str) -> None:
    made, here = vector.metadata["model"], model_identity(lm)
    if (made["hidden_size"], made["n_layers"]) != (here["hidden_size"], here["n_layers"]):
        raise ConfigError(
            f"{where} was made with {made['source']} ({made['n_layers']} blocks of width {made['hidden_size']}); "
            f"this model, {here['source']}, has {here['n_layers']} blocks of width {here['hidden_size']}",
            "use the model the vector was made with, or make a vector with this one (`taskvec vector`)",
        )
    if (made["source"], made["file_sha256"], made["model_type"]) != (
        here["source"],
        here["file_sha256"],
        here["model_type"],
    ):
        raise ConfigError(
            f"{where} was made with {made['source']}, not with this model ({here['source']}): a task vector "
            "lives in one model's residual stream",
            "use the model the vector was made with, or make a vector with this one (`taskvec vector`)",
        )


def _contexts(pairs: Sequence[Pair], k: int, dummies: int, contexts: int, seed: int) -> list[Prompt]:
    from taskvec.prompts import demonstration_sets

    needed = k + dummies
    if len(pairs) < needed:
        raise ConfigError(
            f"{len(pairs)} pairs left for the demonstrations, but a context needs {needed} distinct ones "
            f"(k={k} demonstrations + {dummies} dummy queries)",
            "add pairs, lower k, or give the layer (no pairs are then held out to choose it)",
        )
    return demonstration_sets([(p.input, p.outputs[0]) for p in pairs], k, dummies, contexts, f"contexts:{seed}")


def no_block_works(choice: dict) -> str:
    """The warning for a layer choice where no block's theta beats the bare query on the held-out
    pairs: the block kept is the tie rule's, not a finding; and whether ICL itself does the task."""
    held_out = len(choice["held_out"])
    best = choice["accuracy"]
    if "accuracy_by_layer" not in choice:  # a method at every block: no block to choose
        return (
            f"the vector does not work: it answers {best:.0%} of the {held_out} held-out queries at its best strength, "
            f"the bare query {choice['bare_accuracy']:.0%} (ICL {choice['icl_accuracy']:.0%}). The vector is written; "
            "try more pairs, another prompt format or a larger model"
        )
    icl = (
        f"ICL itself gets {choice['icl_accuracy']:.0%} of them, so the model can do the task from demonstrations "
        "but no single block's theta carries it"
        if choice["icl_accuracy"] > choice["bare_accuracy"]
        else f"ICL itself gets {choice['icl_accuracy']:.0%}: the model does not do this task from its demonstrations "
        "either"
    )
    return (
        f"no block works: the best block's theta answers {best:.0%} of the {held_out} held-out queries, the bare "
        f"query {choice['bare_accuracy']:.0%}; {icl}. The vector is written, but its block is the first of the "
        "tie, not a finding; try more pairs, another prompt format or a larger model"
    )


def task_vector(
    lm: LoadedModel,
    pairs: Sequence[Pair],
    layer: int | str = "auto",
    k: int = defaults.K,
    contexts: int = defaults.CONTEXTS,
    dummies: int = defaults.DUMMIES,
    fmt: PromptFormat | None = None,
    scoring: str = "exact",
    seed: int = 0,
    batch_size: int = defaults.BATCH_SIZE,
    source: str = "",
    method: str = "task_vector",
    strength: float | str = "auto",
    settings: dict | None = None,
) -> TaskVector:
    """theta of the task that ``pairs`` show, averaged over ``contexts`` demonstration sets, and the
    block it goes after: ``layer`` if given, else the best on held-out pairs (see the module's text).
    With another ``method``, that method's vector from the same demonstration sets; an additive
    method's ``strength`` is chosen with the block from its grid (``"auto"``; where the layer is given,
    1), or given. ``settings``: the method's own settings (field -> value; its authors' defaults
    otherwise)."""
    from taskvec.architectures import describe
    from taskvec.evaluate import token_decoder
    from taskvec.forward.readout import next_tokens
    from taskvec.scoring import first_token_correct
    from taskvec.tasks.base import FIRST_TOKEN_RULES

    fmt = fmt or PromptFormat()
    fmt.validate()
    n_layers = describe(lm.model).n_layers
    if layer != "auto" and not (isinstance(layer, int) and 0 <= layer < n_layers):
        raise ConfigError(
            f"layer {layer!r} is out of range: this model has blocks 0 to {n_layers - 1}", "give --layer auto or 0..N-1"
        )
    if scoring not in FIRST_TOKEN_RULES:
        raise ConfigError(f"unknown scoring rule {scoring!r}; use one of {', '.join(FIRST_TOKEN_RULES)}")
    if k < 1 or contexts < 1 or dummies < 1:
        raise ConfigError(f"k, contexts and dummies must be at least 1 (got {k}, {contexts}, {dummies})")
    chosen_method = methods.get(method)
    if strength != "auto" and (not chosen_method.takes_strength or isinstance(strength, str)):
        raise ConfigError(
            f"strength {strength!r} given for {method}: only a method that adds or turns takes a strength, as a number",
            "leave the strength at auto, or give a number with a method that takes one: "
            + ", ".join(m.name for m in methods.registry().values() if m.takes_strength),
        )
    if chosen_method.every_layer and layer != "auto":
        raise ConfigError(
            f"layer {layer} given for {method}, which goes into every block at once",
            "leave the layer at auto (a quarter of the pairs are held out to choose its strength)",
        )
    strengths = chosen_method.strengths if strength == "auto" else (float(strength),)
    order = list(pairs)
    random.Random(f"pairs:{seed}").shuffle(order)
    held_out = order[: max(4, len(order) // 4)] if layer == "auto" else []
    if layer == "auto" and len(order) - len(held_out) < k + dummies:
        raise ConfigError(
            f"{len(order)} pairs: {len(held_out)} are held out to choose the layer and a context needs "
            f"{k + dummies} more (k={k} + {dummies} dummies)",
            f"give at least {len(held_out) + k + dummies} pairs, lower k, or give the layer",
        )
    used = _contexts(order[len(held_out) :], k, dummies, contexts, seed)
    made = chosen_method.extract(lm, used, fmt, batch_size, chosen_method.settings(settings))
    vectors = chosen_method.rows(made)
    extra: dict = {}

    choice: dict = {"how": "given"}
    chosen_strength = chosen_method.default_strength if strength == "auto" else float(strength)  # auto: chosen below
    if layer == "auto":
        decode = token_decoder(lm)

        def accuracy_of(tokens) -> float:
            right = [first_token_correct(decode(t), p.outputs, scoring) for t, p in zip(tokens, held_out)]
            return float(np.mean(right))

        queries = [fmt.query.format(x=p.input) for p in held_out]
        chosen = chosen_method.choose(lm, made, queries, [p.outputs for p in held_out], scoring, strengths, batch_size)
        layer, chosen_strength, best, by_strength = chosen.layer, chosen.strength, chosen.accuracy, chosen.grid
        # the vectors the choice settles on (a function vector's head count): the file holds what is applied
        made, extra = chosen_method.settle(made, chosen)
        vectors = chosen_method.rows(made)
        # the two references the chosen block is read against: the bare query, and ICL (each held-out
        # query after the demonstrations of one of the contexts, in turn)
        icl_prompts = [fmt.render(used[i % len(used)].demonstrations, p.input) for i, p in enumerate(held_out)]
        bare = accuracy_of(next_tokens(lm, queries, batch_size))
        icl = accuracy_of(next_tokens(lm, icl_prompts, batch_size))
        choice = {
            "how": "auto",
            "held_out": [p.input for p in held_out],
            "accuracy": best,
            "scoring": scoring,
            "bare_accuracy": bare,
            "icl_accuracy": icl,
            "beats_bare": best > bare,
            "configurations": chosen.configurations,
        }
        if not chosen_method.every_layer:
            choice["accuracy_by_layer"] = chosen.by_layer
        if chosen_method.takes_strength:
            choice["accuracy_by_strength"] = {str(v): a for v, a in by_strength.items()}
        log.info(
            "%s: %.0f%% of %d held-out queries right (ICL %.0f%%, bare query %.0f%%)",
            "every block" if layer < 0 else f"block {layer}",
            100 * best,
            len(held_out),
            100 * icl,
            100 * bare,
        )
        if not choice["beats_bare"]:
            log.warning("%s", no_block_works(choice))
    digest = hashlib.sha256(json.dumps([[p.input, list(p.outputs)] for p in pairs]).encode()).hexdigest()
    metadata = {
        "taskvec_vector": FORMAT_VERSION,
        "model": model_identity(lm),
        "format": dataclasses.asdict(fmt),
        "k": k,
        "contexts": [{"demonstrations": [list(d) for d in c.demonstrations], "dummies": list(c.dummies)} for c in used],
        "dummies": dummies,
        "seed": seed,
        "pairs": {"count": len(pairs), "sha256": digest, "source": source},
        "layer_choice": choice,
        "method": chosen_method.name,
        "site": chosen_method.site,
        "operation": chosen_method.operation,
        "strength": chosen_strength,
    }
    metadata.update(made.file_metadata())  # a function vector's heads, a trained method's training
    if chosen_method.trained:
        metadata["trainable_parameters"] = chosen_method.trainable_parameters(len(vectors))
    if extra:
        metadata["chosen"] = extra
    return TaskVector(vectors.astype(np.float32), int(layer), metadata)


@dataclasses.dataclass(frozen=True)
class Prediction:
    query: str  # the input as given
    bare: str  # the model's answer to the bare query, up to the separator
    patched: str  # its answer with theta patched in
    bare_first: str  # the first token of each (what the paper scores)
    patched_first: str

    def __str__(self) -> str:
        return f"{self.query}: bare {self.bare_first!r}, with the task vector {self.patched_first!r}"


def apply(
    lm: LoadedModel,
    vector: TaskVector,
    queries: Sequence[str],
    batch_size: int = defaults.BATCH_SIZE,
    where: str = "the vector",
) -> list[Prediction]:
    """Each query (an input, written with the vector's query template) answered bare and with the
    vector patched in as its method patches (theta replaces the last token's stream after its block;
    an additive method's vector is added there and at each generated token; an in-context vector turns
    every block's MLP output at every position); each answer is the greedy generation up to the
    separator."""
    from taskvec.answers import until_separator
    from taskvec.forward.generate import Continuation, greedy_continue
    from taskvec.forward.patched import patched_next_tokens
    from taskvec.forward.readout import next_tokens

    _check_model(vector, lm, where)
    if not queries:
        raise ConfigError("no queries given", "give --query TEXT (repeatable) or --query-file FILE")
    fmt = vector.format
    texts = [fmt.query.format(x=q) for q in queries]
    until = Continuation(fmt.max_answer_tokens, fmt.separator)
    method = vector.method
    bare = greedy_continue(lm, texts, next_tokens(lm, texts, batch_size), until, batch_size)
    made, extra = vector.method_vectors(), vector.chosen
    first = patched_next_tokens(
        lm, texts, method.intervention(made, vector.layer, vector.strength, len(texts), **extra), batch_size
    )
    during = method.intervention(made, vector.layer, vector.strength, len(texts), generating=True, **extra)
    patched = greedy_continue(lm, texts, first, until, batch_size, intervention=during)

    def text(ids: list[int]) -> str:
        return until_separator(lm.tokenizer.decode(ids), fmt.separator).strip()

    return [
        Prediction(q, text(b), text(p), lm.tokenizer.decode(b[:1]).strip(), lm.tokenizer.decode(p[:1]).strip())
        for q, b, p in zip(queries, bare, patched)
    ]
