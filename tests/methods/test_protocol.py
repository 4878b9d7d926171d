"""Every registered method through the protocol, on tiny random-weight models of several
architectures: extract, choose, intervene (every hook fires), the vector file's round trip, identity
at strength 0 where the method's operation has one, the controls, and the refusals. A method added to
the registry is tested here without editing this file; one removed from it is gone from the command
line, the params schema, the comparison and the report."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from by_hand import FMT, PAIRS

from conftest import tiny_model
from taskvec import api, methods
from taskvec.architectures import describe
from taskvec.forward.patched import patched_next_tokens
from taskvec.forward.readout import next_tokens
from taskvec.hooks.intervention import Interventions, intervene
from taskvec.methods.pool import shuffle_labels
from taskvec.prompts import demonstration_sets

NAMES = methods.names()
QUERIES = [FMT.query.format(x=x) for x in ("q", "rr", "s")]


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama")


@pytest.fixture(scope="module")
def pool():
    return demonstration_sets([(p.input, p.outputs[0]) for p in PAIRS[:12]], 3, 2, 3, "pool")


def _settings(method):
    """The method's settings, each integer at its smallest (the tiny model's tests need no more)."""
    fields = methods.settings_fields(method)
    return method.settings({name: 2 for name, kind, _, _ in fields if kind is int})


def _records(intervention):
    return intervention.records if isinstance(intervention, Interventions) else (intervention,)


@pytest.mark.parametrize("name", NAMES)
def test_every_method_extracts_chooses_and_intervenes_with_every_hook_firing(lm, pool, name):
    method = methods.get(name)
    made = method.extract(lm, pool, FMT, 2, _settings(method))
    n_layers = describe(lm.model).n_layers
    assert made.values.shape[0] == n_layers and np.isfinite(made.values).all()
    choice = method.choose(lm, made, QUERIES, [("Q",), ("RR",), ("S",)], "exact", batch_size=2)
    assert choice.configurations >= 1 and 0.0 <= choice.accuracy <= 1.0
    assert choice.layer == -1 if method.every_layer else 0 <= choice.layer < n_layers
    record = method.intervention(made, choice.layer, choice.strength, len(QUERIES), **choice.extra)
    with intervene(describe(lm.model), record) as fired:
        next_tokens(lm, QUERIES, 4)
    counters = fired if isinstance(fired, list) else [fired]
    assert all(sum(c.values()) >= 1 for c in counters), "a hook of the method's intervention never fired"
    during = method.intervention(made, choice.layer, choice.strength, len(QUERIES), True, **choice.extra)
    assert all(r.positions == method.generation_positions for r in _records(during))


@pytest.mark.parametrize("name", NAMES)
def test_every_methods_controls_keep_the_shape_and_the_random_one_its_norm(lm, pool, name):
    method = methods.get(name)
    made = method.extract(lm, pool, FMT, 2, _settings(method))
    shuffled = method.extract(lm, shuffle_labels(pool, 0), FMT, 2, _settings(method), keep=made)
    random = method.random_like(made, 3)
    assert shuffled.values.shape == random.values.shape == made.values.shape
    assert type(shuffled) is type(made) and type(random) is type(made)
    assert not np.array_equal(random.values, made.values)
    assert np.array_equal(method.random_like(made, 3).values, random.values)  # seeded


# implicit ICL's coefficients take no strength: its identity (weight 0, scale 1) is tested in its own file
IDENTITY_AT_ZERO = [n for n in NAMES if methods.get(n).operation in ("add", "rotate") and methods.get(n).takes_strength]


@pytest.mark.parametrize("name", IDENTITY_AT_ZERO)
@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_at_strength_zero_an_additive_or_turning_method_changes_nothing(pool, name, architecture):
    method = methods.get(name)
    tiny = tiny_model(architecture)
    made = method.extract(tiny, pool, FMT, 2, _settings(method))
    layer = -1 if method.every_layer else describe(tiny.model).n_layers // 2
    patched = patched_next_tokens(tiny, QUERIES, method.intervention(made, layer, 0.0, len(QUERIES)))
    assert np.array_equal(patched, next_tokens(tiny, QUERIES))


@pytest.mark.parametrize("name", NAMES)
def test_every_methods_vector_file_round_trips_and_applies_as_made(lm, tmp_path, name):
    method = methods.get(name)
    settings = {field: 2 for field, kind, _, _ in methods.settings_fields(method) if kind is int}
    vector = api.task_vector(lm, PAIRS[:16], k=3, contexts=2, dummies=1, method=name, settings=settings)
    assert vector.metadata["method"] == name and vector.method is method
    loaded = api.TaskVector.load(vector.save(tmp_path / f"{name}.safetensors"))
    assert np.array_equal(loaded.vectors, vector.vectors) and loaded.layer == vector.layer
    queries = ["q", "rr"]
    assert api.apply(lm, loaded, queries) == api.apply(lm, vector, queries)


@pytest.mark.parametrize("name", NAMES)
def test_every_method_refuses_what_it_cannot_take_before_any_forward_pass(monkeypatch, name):
    method = methods.get(name)
    lm = tiny_model("llama")

    def no_pass(*args, **kwargs):
        raise AssertionError("a forward pass ran before the refusal")

    monkeypatch.setattr(lm.model, "forward", no_pass)
    if not method.takes_strength:
        with pytest.raises(api.ConfigError, match="strength"):
            api.task_vector(lm, PAIRS, k=3, contexts=2, dummies=1, method=name, strength=2.0)
    if method.every_layer:
        with pytest.raises(api.ConfigError, match="every block"):
            api.task_vector(lm, PAIRS, layer=1, k=3, contexts=2, dummies=1, method=name)
    with pytest.raises(api.ConfigError, match="unknown method"):
        api.task_vector(lm, PAIRS, k=3, contexts=2, dummies=1, method=name + "_unregistered")


def _method_choices() -> tuple[str, ...]:
    from taskvec.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return tuple(next(a for a in sub.choices["vector"]._actions if a.dest == "method").choices)


@pytest.mark.parametrize("removed", NAMES[1:])
def test_a_method_removed_from_the_registry_is_gone_from_help_schema_comparison_and_report(monkeypatch, removed):
    from taskvec.studies.methods import numbers as report

    own = {field for field, _, _, _ in methods.settings_fields(methods.get(removed))}
    assert own <= set(methods.settings_schema()) and f"{removed} (" in methods.help_text()
    kept = {n: m for n, m in methods.registry().items() if n != removed}
    monkeypatch.setattr(methods, "registry", lambda: kept)
    assert removed not in _method_choices() and _method_choices() == tuple(kept)
    assert f"{removed} (" not in methods.help_text()
    assert not own & set(methods.settings_schema())  # its settings leave the params schema
    assert methods.names() == tuple(kept)  # what compare-methods runs by default
    assert report.label(removed) == removed.replace("_", " ")  # the report no longer knows its label
    with pytest.raises(api.ConfigError, match="unknown method"):
        methods.get(removed)
