"""The one place that knows where each architecture keeps its decoder blocks, final norm and
unembedding. Everything else asks :func:`describe`."""

from __future__ import annotations

import dataclasses
import operator

import torch

from taskvec.errors import UnsupportedArchitecture


@dataclasses.dataclass(frozen=True)
class Layout:
    layers: str
    final_norm: str
    unembedding: str


_DECODER_ONLY = Layout("model.layers", "model.norm", "lm_head")

LAYOUTS: dict[str, Layout] = {
    "llama": _DECODER_ONLY,
    "mistral": _DECODER_ONLY,
    "qwen2": _DECODER_ONLY,
    "qwen3": _DECODER_ONLY,
    "gemma": _DECODER_ONLY,
    "gemma2": _DECODER_ONLY,
    "gemma3_text": _DECODER_ONLY,
    "gpt_neox": Layout("gpt_neox.layers", "gpt_neox.final_layer_norm", "lm_head"),
    "gptj": Layout("transformer.h", "transformer.ln_f", "lm_head"),
    "gpt2": Layout("transformer.h", "transformer.ln_f", "lm_head"),
}


@dataclasses.dataclass(frozen=True)
class Architecture:
    model_type: str
    layers: torch.nn.ModuleList
    final_norm: torch.nn.Module
    unembedding: torch.nn.Module
    logit_softcap: float | None = None  # Gemma 2's final tanh soft-capping of the logits

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def logits(self, last_block_output: torch.Tensor) -> torch.Tensor:
        """The model's next-token logits from its last block's output: the final norm, the unembedding
        and, where the architecture has one, the final soft-capping."""
        logits = self.unembedding(self.final_norm(last_block_output))
        if self.logit_softcap:
            logits = torch.tanh(logits / self.logit_softcap) * self.logit_softcap
        return logits


def describe(model: torch.nn.Module) -> Architecture:
    """Locate the decoder blocks, final norm and unembedding of a Hugging Face causal LM."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    layout = LAYOUTS.get(model_type)
    if layout is None:
        raise UnsupportedArchitecture(
            f"architecture {model_type!r} is not supported; supported model types: {', '.join(sorted(LAYOUTS))}",
            fix="use a model of one of those types, or add the architecture's layer list, final norm and "
            "unembedding to taskvec.architectures.LAYOUTS (with a tiny model in the tests)",
        )
    try:
        layers = operator.attrgetter(layout.layers)(model)
        norm = operator.attrgetter(layout.final_norm)(model)
        head = operator.attrgetter(layout.unembedding)(model)
    except AttributeError as error:
        raise UnsupportedArchitecture(
            f"model of type {model_type!r} ({type(model).__name__}) does not have the expected modules ({layout})",
            fix="load it with AutoModelForCausalLM (a causal language model, not a base or encoder model)",
        ) from error
    return Architecture(model_type, layers, norm, head, getattr(model.config, "final_logit_softcapping", None))
