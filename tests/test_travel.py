"""How far a task vector travels: nested demonstrations and several demonstration sets, on a tiny
random model (mechanics: each setting's predictions equal a direct computation)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import tiny_model
from taskvec.errors import ConfigError
from taskvec.extract import task_vectors
from taskvec.forward.patched import patched_next_tokens
from taskvec.forward.readout import next_tokens
from taskvec.hooks.intervention import Intervention
from taskvec.prompts import PromptFormat, SplitSizes, UsablePair, sample_prompts
from taskvec.studies.travel.step import demonstration_pool, demonstration_sets, nested_demonstrations, travel_task

FMT = PromptFormat()
USABLE = [UsablePair(c, (c.upper(),), (c.upper(),)) for c in "abcdefghijklmnopqrstuvwxyz"]
TEST = [p for p in sample_prompts(USABLE, SplitSizes(k=3, baseline=0, dev=0, test=4, dummies=2), seed=7)]


def test_more_demonstrations_extend_the_studys_own_and_avoid_the_query_and_dummies():
    prompt = TEST[0]
    pool = demonstration_pool(prompt, USABLE)
    assert len(pool) == 26 - 3 - 1 - 2
    demos = nested_demonstrations(prompt, pool, 10, seed=0)
    assert demos[:3] == prompt.demonstrations and len(demos) == 10 == len(set(demos))
    assert not {x for x, _ in demos} & {prompt.query, *prompt.dummies}
    assert all(y == x.upper() for x, y in demos)
    assert demos == nested_demonstrations(prompt, pool, 10, seed=0)  # seeded
    assert nested_demonstrations(prompt, pool, 10, seed=1)[:3] == prompt.demonstrations
    assert nested_demonstrations(prompt, pool, 2, seed=0) == prompt.demonstrations  # never fewer than its own
    with pytest.raises(ConfigError, match="k = 30 needs 27 more demonstrations"):
        nested_demonstrations(prompt, pool, 30, seed=0)


def test_each_demonstration_set_is_as_large_as_the_prompts_without_repeats_or_the_query():
    prompt = TEST[1]
    sets = demonstration_sets(prompt, demonstration_pool(prompt, USABLE), 4, seed=0)
    assert sets[0] == prompt.demonstrations and len(sets) == 4
    for demos in sets[1:]:
        assert len(demos) == 3 == len(set(demos))
        assert not {x for x, _ in demos} & {prompt.query, *prompt.dummies, *(x for x, _ in prompt.demonstrations)}
    assert len(set(sets)) == 4
    with pytest.raises(ConfigError, match="a demonstration set needs 3 pairs, but only 2"):
        demonstration_sets(prompt, demonstration_pool(prompt, USABLE)[:2], 2, seed=0)


def test_each_setting_predicts_what_a_direct_computation_does():
    lm = tiny_model("llama")
    layer = 1
    table = travel_task(lm, TEST, USABLE, FMT, layer, "upper", "exact", ks=(1, 3, 5), contexts=(1, 2), seed=0)
    data = table.to_pydict()

    def tokens(experiment, value, method):
        return [
            t
            for t, e, v, m in zip(data["token_id"], data["experiment"], data["value"], data["method"])
            if (e, v, m) == (experiment, value, method)
        ]

    queries = [FMT.query.format(x=p.query) for p in TEST]
    pools = [demonstration_pool(p, USABLE) for p in TEST]
    for k in (1, 3, 5):
        prompts = [
            dataclasses.replace(p, demonstrations=nested_demonstrations(p, pool, 5, 0)[:k])
            for p, pool in zip(TEST, pools)
        ]
        icl = next_tokens(lm, [FMT.render(p.demonstrations, p.query) for p in prompts])
        assert tokens("k", k, "icl") == icl.tolist()
        theta = task_vectors(lm, prompts, FMT)[:, layer]
        assert tokens("k", k, "tv") == patched_next_tokens(lm, queries, Intervention(layer, theta)).tolist()
    assert tokens("contexts", 1, "tv") == tokens("k", 3, "tv")  # one set: the study's own prompt (k = 3 here)
    sets = [demonstration_sets(p, pool, 2, 0) for p, pool in zip(TEST, pools)]
    both = np.mean(
        [task_vectors(lm, [dataclasses.replace(p, demonstrations=s[j]) for p, s in zip(TEST, sets)], FMT)[:, layer]
         for j in range(2)],
        axis=0,
    )  # fmt: skip
    assert tokens("contexts", 2, "tv") == patched_next_tokens(lm, queries, Intervention(layer, both)).tolist()
    assert set(data["layer"]) == {layer, -1} and len(data["task"]) == 4 * (3 * 2 + 2)
    answers = [TEST[i].answers[0] for i in data["index"]]
    assert data["correct"] == [p.strip() == a for p, a in zip(data["prediction"], answers)]
