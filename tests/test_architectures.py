from __future__ import annotations

import pytest
import torch

from conftest import TINY_CONFIGS, TINY_LAYERS, tiny_model
from taskvec.architectures import LAYOUTS, UnsupportedArchitecture, describe


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt_neox", "gptj", "gpt2", "qwen2"])
def test_every_required_architecture_is_described(model_type):
    lm = tiny_model(model_type)
    arch = describe(lm.model)
    assert arch.model_type == model_type
    assert arch.n_layers == TINY_LAYERS
    assert isinstance(arch.unembedding, torch.nn.Linear)
    assert arch.unembedding.out_features == lm.model.config.vocab_size


def test_tiny_configs_cover_the_layouts_they_claim():
    assert set(TINY_CONFIGS) <= set(LAYOUTS)


def test_unsupported_architecture_lists_the_supported_ones():
    model = torch.nn.Linear(2, 2)
    model.config = type("Config", (), {"model_type": "mamba"})()
    with pytest.raises(UnsupportedArchitecture, match="'mamba' is not supported.*gpt_neox.*llama"):
        describe(model)
