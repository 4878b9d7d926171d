from __future__ import annotations

import pytest
import torch

from conftest import TINY_CONFIGS, TINY_LAYERS, tiny_model
from taskvec.architectures import LAYOUTS, UnsupportedArchitecture, describe


@pytest.mark.parametrize("model_type", sorted(LAYOUTS))
def test_every_supported_architecture_is_described(model_type):
    lm = tiny_model(model_type)
    arch = describe(lm.model)
    assert arch.model_type == model_type
    assert arch.n_layers == TINY_LAYERS
    assert isinstance(arch.unembedding, torch.nn.Linear)
    assert arch.unembedding.out_features == lm.model.config.vocab_size


def test_every_supported_architecture_has_a_tiny_model_in_the_equivalence_tests():
    """A supported architecture is one the tests instantiate: the tiny_lm fixture runs every
    equivalence test (capture, patch, padding, sweep, generation) on each of TINY_CONFIGS."""
    assert set(TINY_CONFIGS) == set(LAYOUTS)


def test_unsupported_architecture_lists_the_supported_ones():
    model = torch.nn.Linear(2, 2)
    model.config = type("Config", (), {"model_type": "mamba"})()
    with pytest.raises(UnsupportedArchitecture, match="'mamba' is not supported.*gpt_neox.*llama"):
        describe(model)
