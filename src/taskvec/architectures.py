"""The one place that knows each architecture's module layout: one adapter per model type names its
decoder blocks, final norm and unembedding, and, inside a block, every site an intervention can
read or write (:mod:`taskvec.hooks.intervention`). Everything else asks :func:`describe`."""

from __future__ import annotations

import dataclasses
import operator

import torch

from taskvec.errors import UnsupportedArchitecture

# The sites of a decoder block, named as an intervention names them:
#   block_output      the residual stream after the block (the task vector's site);
#   attention_output  what the attention adds to the residual stream;
#   mlp_output        what the MLP adds to the residual stream;
#   attention_module  the attention module's own output: attention_output, except on Gemma 2 and 3,
#                     where it is before the post-attention norm (the norm then rescales what is written
#                     there: implicit ICL's site, as its authors' hooks on the attention module have it);
#   mlp_module        likewise the MLP module's own output (before Gemma's post-feed-forward norm);
#   head              one attention head's output: its slice of the input of the attention's output
#                     projection (heads' slices through the projection sum to the attention output);
#   attention_heads   every head's output at once: the whole input of the attention's output projection
#                     (the state vector's site; on Gemma 2 and 3 it is before the projection and its norm).
SITES = ("block_output", "attention_output", "mlp_output", "attention_module", "mlp_module", "head", "attention_heads")
INPUT_SITES = ("head", "attention_heads")  # sites whose value is their module's input, not its output


@dataclasses.dataclass(frozen=True)
class Adapter:
    """Where one architecture keeps its modules: ``blocks``, ``final_norm`` and ``unembedding`` are
    paths from the model; the rest are paths inside a block. ``attention_output`` and ``mlp_output``
    name the module whose output joins the residual stream (the attention or MLP itself, or the norm
    it passes through first: Gemma 2 and 3); ``attention_projection`` the attention's output
    projection, whose input splits into the heads."""

    blocks: str
    final_norm: str
    unembedding: str
    attention_output: str
    mlp_output: str
    attention_projection: str
    attention_output_norm: str | None = None  # the norm the attention output passes through, where there is one
    # the attention and MLP modules themselves, where a norm sits between them and the residual stream
    attention_module: str | None = None
    mlp_module: str | None = None

    def block_paths(self) -> dict[str, str]:
        """Each block-level site's module path inside a block (the head site's is the projection)."""
        return {
            "block_output": "",
            "attention_output": self.attention_output,
            "mlp_output": self.mlp_output,
            "attention_module": self.attention_module or self.attention_output,
            "mlp_module": self.mlp_module or self.mlp_output,
            "head": self.attention_projection,
            "attention_heads": self.attention_projection,
        }


_LLAMA = Adapter("model.layers", "model.norm", "lm_head", "self_attn", "mlp", "self_attn.o_proj")
_GEMMA_POST_NORMS = Adapter(
    "model.layers",
    "model.norm",
    "lm_head",
    "post_attention_layernorm",
    "post_feedforward_layernorm",
    "self_attn.o_proj",
    attention_output_norm="post_attention_layernorm",
    attention_module="self_attn",
    mlp_module="mlp",
)

ADAPTERS: dict[str, Adapter] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "gemma": _LLAMA,
    "gemma2": _GEMMA_POST_NORMS,
    "gemma3_text": _GEMMA_POST_NORMS,
    "gpt_neox": Adapter(
        "gpt_neox.layers", "gpt_neox.final_layer_norm", "lm_head", "attention", "mlp", "attention.dense"
    ),
    "gptj": Adapter("transformer.h", "transformer.ln_f", "lm_head", "attn", "mlp", "attn.out_proj"),
    "gpt2": Adapter("transformer.h", "transformer.ln_f", "lm_head", "attn", "mlp", "attn.c_proj"),
}


@dataclasses.dataclass(frozen=True)
class Architecture:
    model_type: str
    layers: torch.nn.ModuleList
    final_norm: torch.nn.Module
    unembedding: torch.nn.Module
    adapter: Adapter
    logit_softcap: float | None = None  # Gemma 2's final tanh soft-capping of the logits

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def site_modules(self, site: str) -> list[torch.nn.Module]:
        """The module of ``site`` in every block, in block order: a forward hook on it sees the site's
        value as its output (its input, for the :data:`INPUT_SITES`)."""
        if site not in SITES:
            raise ValueError(f"unknown site {site!r}; the sites are {', '.join(SITES)}")
        path = self.adapter.block_paths()[site]
        if not path:
            return list(self.layers)
        return [operator.attrgetter(path)(layer) for layer in self.layers]

    def logits(self, last_block_output: torch.Tensor) -> torch.Tensor:
        """The model's next-token logits from its last block's output: the final norm, the unembedding
        and, where the architecture has one, the final soft-capping."""
        logits = self.unembedding(self.final_norm(last_block_output))
        if self.logit_softcap:
            logits = torch.tanh(logits / self.logit_softcap) * self.logit_softcap
        return logits


def describe(model: torch.nn.Module) -> Architecture:
    """Locate the decoder blocks, final norm, unembedding and every block's sites of a Hugging Face
    causal LM."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    adapter = ADAPTERS.get(model_type)
    if adapter is None:
        raise UnsupportedArchitecture(
            f"architecture {model_type!r} is not supported; supported model types: {', '.join(sorted(ADAPTERS))}",
            fix="use a model of one of those types, or add an adapter naming its blocks, final norm, "
            "unembedding and block sites to taskvec.architectures.ADAPTERS (with a tiny model in the tests)",
        )
    try:
        layers = operator.attrgetter(adapter.blocks)(model)
        norm = operator.attrgetter(adapter.final_norm)(model)
        head = operator.attrgetter(adapter.unembedding)(model)
        arch = Architecture(
            model_type, layers, norm, head, adapter, getattr(model.config, "final_logit_softcapping", None)
        )
        for site in SITES:
            arch.site_modules(site)
    except AttributeError as error:
        raise UnsupportedArchitecture(
            f"model of type {model_type!r} ({type(model).__name__}) does not have the expected modules ({adapter})",
            fix="load it with AutoModelForCausalLM (a causal language model, not a base or encoder model)",
        ) from error
    return arch
