"""The task vector as a method of the registry: its vector file (a file from before methods is theta)
and the refusals before any forward pass."""

from __future__ import annotations

import numpy as np
import pytest
from by_hand import PAIRS

from conftest import tiny_model
from taskvec import api
from taskvec.errors import ConfigError


def test_a_vector_file_keeps_its_method_and_strength_and_a_file_from_before_methods_is_theta(tmp_path):
    lm = tiny_model("llama")
    vector = api.task_vector(lm, PAIRS, layer=1, k=3, contexts=1, method="mean_difference", strength=2.5)
    loaded = api.TaskVector.load(vector.save(tmp_path / "v.safetensors"))
    assert (loaded.method.name, loaded.strength, loaded.metadata["site"]) == ("mean_difference", 2.5, "block_output")
    np.testing.assert_array_equal(loaded.vectors, vector.vectors)
    older = {k: v for k, v in vector.metadata.items() if k not in ("method", "strength", "site", "operation")}
    assert api.TaskVector(vector.vectors, 1, older).method.name == "task_vector"


def test_unknown_methods_and_misplaced_strengths_are_refused_before_any_forward_pass(monkeypatch):
    import taskvec.extract

    monkeypatch.setattr(taskvec.extract, "shared_prefix_states", lambda *a, **k: pytest.fail("a forward pass ran"))
    lm = tiny_model("llama")
    with pytest.raises(ConfigError, match="unknown method 'icv'") as error:
        api.task_vector(lm, PAIRS, layer=1, method="icv")
    assert "task_vector, mean_difference" in str(error.value)
    with pytest.raises(ConfigError, match="only a method that adds or turns takes a strength"):
        api.task_vector(lm, PAIRS, layer=1, strength=2.0)
    with pytest.raises(ConfigError, match="layer 1 given for in_context_vector, which goes into every block"):
        api.task_vector(lm, PAIRS, layer=1, method="in_context_vector")
