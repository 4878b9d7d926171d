from __future__ import annotations

import pytest

from taskvec.prompts import PromptFormat, SplitSizes, sample_prompts, single_token_pairs
from taskvec.tasks import Pair, get_task


def test_default_format_matches_the_paper():
    fmt = PromptFormat()
    assert fmt.render([("a", "b"), ("c", "d")], "e") == "example:a->b\nexample:c->d\nexample:e->"
    assert fmt.query.format(x="e") == "example:e->"


def test_splits_have_the_configured_sizes_and_are_seeded():
    pairs = get_task("list_last").build(0)
    sizes = SplitSizes(k=5, baseline=100, dev=50, test=50, dummies=2)
    prompts = sample_prompts(pairs, sizes, seed=7)
    counts = {split: sum(p.split == split for p in prompts) for split in ("baseline", "dev", "test")}
    assert counts == {"baseline": 100, "dev": 50, "test": 50}
    assert prompts == sample_prompts(pairs, sizes, seed=7)
    assert prompts != sample_prompts(pairs, sizes, seed=8)


def test_dummies_are_neither_the_query_nor_a_demonstration():
    pairs = get_task("next_letter").build(0)
    for prompt in sample_prompts(pairs, SplitSizes(), seed=0):
        if prompt.split == "baseline":
            assert not prompt.demonstrations and not prompt.dummies
            continue
        demo_inputs = {x for x, _ in prompt.demonstrations}
        assert len(prompt.demonstrations) == 5 and len(demo_inputs) == 5
        assert prompt.query not in demo_inputs
        assert len(prompt.dummies) == 2 and len(set(prompt.dummies)) == 2
        assert not set(prompt.dummies) & (demo_inputs | {prompt.query})


def test_too_few_pairs_for_k_is_an_error_that_says_so():
    pairs = [Pair(str(i), (str(i),)) for i in range(6)]
    with pytest.raises(ValueError, match="only 6 usable pairs.*k=5"):
        sample_prompts(pairs, SplitSizes(k=5), seed=0)


def test_single_token_filter_uses_the_tokenizer():
    class WordTokenizer:
        def encode(self, text, add_special_tokens=False):
            return text.split("-")

    pairs = [Pair("a", ("b",)), Pair("c", ("d-e",)), Pair("f", ("g-h", "i"))]
    assert single_token_pairs(pairs, WordTokenizer()) == [Pair("a", ("b",)), Pair("f", ("i",))]


def test_a_template_without_placeholders_is_rejected():
    with pytest.raises(ValueError, match="lacks \\{y\\}"):
        PromptFormat(demonstration="{x} =").validate()
