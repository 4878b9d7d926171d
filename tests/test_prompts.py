from __future__ import annotations

import pytest

from taskvec.prompts import PromptFormat, SplitSizes, UsablePair, apply_rules, is_one_token, sample_prompts
from taskvec.tasks import Pair, get_task
from taskvec.tasks.base import MAPPING_RULES, TaskRules


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


class VocabTokenizer:
    """Greedy longest match over a fixed vocabulary; any other character is a token of its own."""

    def __init__(self, words):
        self.vocab = sorted(set(words), key=len, reverse=True)

    def encode(self, text, add_special_tokens=False):
        tokens, i = [], 0
        while i < len(text):
            token = next((w for w in self.vocab if text.startswith(w, i)), text[i])
            tokens.append(token)
            i += len(token)
        return tokens


VERBS = [Pair("walk", ("walked",)), Pair("run", ("ran",)), Pair("go", ("went",))]


def test_one_token_means_one_token_after_other_text():
    tokenizer = VocabTokenizer(["walked", " ran"])
    assert is_one_token(tokenizer, "walked") and is_one_token(tokenizer, " ran")
    assert not is_one_token(tokenizer, " walked") and not is_one_token(tokenizer, "ran")


@pytest.mark.parametrize(
    "vocabulary, leading_space",
    [
        ([" walked", " ran", " went"], True),  # only the spaced answers are tokens: the paper's code spaces
        (["walked", "ran", "went", " ran"], False),  # spacing keeps 1 of 3: fewer than 70%, plain
        (["walked", "ran", "went", " ran", " went", " walked"], True),  # a tie keeps the leading space
    ],
)
def test_the_leading_space_rule_chooses_the_variant_that_keeps_70_percent(vocabulary, leading_space):
    usable, rendering = apply_rules(VERBS, VocabTokenizer(vocabulary), MAPPING_RULES)
    assert rendering["leading_space"] is leading_space
    space = " " if leading_space else ""
    assert usable and all(
        p.input == space + p.input.strip() and p.answers[0] == space + p.answers[0].strip() for p in usable
    )


def test_the_70_percent_boundary():
    pairs = [Pair(f"w{i}", (f"a{i}",)) for i in range(10)]
    plain = [f"a{i}" for i in range(10)]
    seven = VocabTokenizer(plain + [f" a{i}" for i in range(7)])
    six = VocabTokenizer(plain + [f" a{i}" for i in range(6)])
    assert apply_rules(pairs, seven, MAPPING_RULES)[1] == {
        "leading_space": True,
        "one_token_pairs_plain": 10,
        "one_token_pairs_leading_space": 7,
    }
    assert apply_rules(pairs, six, MAPPING_RULES)[1]["leading_space"] is False
    forced = TaskRules(one_token=True, leading_space="on", scoring="exact")
    assert apply_rules(pairs, six, forced)[1]["leading_space"] is True
    assert len(apply_rules(pairs, six, forced)[0]) == 6


def test_the_one_token_filter_keeps_every_answer_for_the_strict_metric():
    tokenizer = VocabTokenizer(["b", "i"])
    pairs = [Pair("a", ("b",)), Pair("c", ("de",)), Pair("f", ("gh", "i"))]
    usable, _ = apply_rules(pairs, tokenizer, TaskRules(one_token=True, leading_space="off"))
    assert usable == [UsablePair("a", ("b",), ("b",)), UsablePair("f", ("i",), ("gh", "i"))]
    many = [UsablePair(f"{i}", ("i",), ("gh", "i")) for i in range(9)]
    prompts = sample_prompts(many, SplitSizes(k=2, baseline=3, dev=2, test=2, dummies=1), seed=0)
    assert all(p.answers == ("i",) and p.strict_answers == ("gh", "i") for p in prompts)
    assert all(y == "i" for p in prompts for _, y in p.demonstrations)


def test_lists_are_written_as_the_paper_writes_them():
    pairs = get_task("list_first").build(0)
    lengths = {len(p.input.split(",")) for p in pairs}
    assert lengths == {2, 3, 4}
    assert all(p.input.replace(",", "").isalpha() and "[" not in p.input for p in pairs)
    assert all(p.outputs == (p.input.split(",")[0],) for p in pairs)
    assert any(len(set(p.input.split(","))) < len(p.input.split(",")) for p in pairs)  # with replacement
    assert len({p.input for p in pairs}) == len(pairs)


def test_a_template_without_placeholders_is_rejected():
    with pytest.raises(ValueError, match="lacks \\{y\\}"):
        PromptFormat(demonstration="{x} =").validate()
