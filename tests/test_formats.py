"""Prompt formats: how a format writes the study's prompts (queries, spacing, answers), refusals of
bad formats, and, on a tiny random model (mechanics), that every ICL, bare and transfer prediction
equals a direct computation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import run_cli, tiny_model
from taskvec.errors import ConfigError
from taskvec.evaluate import token_decoder
from taskvec.extract import task_vectors
from taskvec.forward.patched import patched_next_tokens, task_vector_patch
from taskvec.forward.readout import next_tokens
from taskvec.prompts import Prompt, PromptFormat, SplitSizes, UsablePair, sample_prompts
from taskvec.studies.formats.step import (
    DEFAULT_FORMATS,
    QUERY_PREFIX,
    Format,
    copies,
    formats_task,
    own_layer_curves,
    tokens_around_input,
    write_prompt,
)

FORMATS = {f.name: f for f in DEFAULT_FORMATS}
SPACED = Prompt("test", 3, ((" hot", " cold"), (" up", " down")), " big", (" small",), (" wet",), (" small", " little"))


def test_the_default_formats_are_the_papers_and_four_others_with_their_queries_and_answer_spacing():
    assert [f.name for f in DEFAULT_FORMATS] == ["paper", "arrow", "qa", "input_output", "tab"]
    queries = {name: (f.query, f.answer_space, f.separator) for name, f in FORMATS.items()}
    assert queries == {
        "paper": ("example:{x}->", "", "\n"),  # the study's own format (params.yaml prompt)
        "arrow": ("{x} ->", " ", "\n"),
        "qa": ("Q: {x}\nA:", " ", "\n\n"),
        "input_output": ("input: {x} output:", " ", "\n"),
        "tab": ("{x}\t", "", "\n"),
    }
    assert FORMATS["paper"].prompt_format() == PromptFormat()


def test_the_studys_format_keeps_its_prompts_and_the_others_drop_the_leading_space_their_template_gives():
    assert write_prompt(SPACED, FORMATS["paper"], leading_space=True) == SPACED
    qa = write_prompt(SPACED, FORMATS["qa"], leading_space=True)
    assert qa.demonstrations == (("hot", "cold"), ("up", "down")) and qa.query == "big" and qa.dummies == ("wet",)
    assert qa.answers == ("small",) and qa.all_answers == ("small", "little")
    rendered = FORMATS["qa"].prompt_format().render(qa.demonstrations, qa.query)
    assert rendered == "Q: hot\nA: cold\n\nQ: up\nA: down\n\nQ: big\nA:"
    tab = write_prompt(SPACED, FORMATS["tab"], leading_space=True)
    assert FORMATS["tab"].prompt_format().render(tab.demonstrations, tab.query) == "hot\tcold\nup\tdown\nbig\t"
    # a study without a leading space has nothing to drop
    plain = dataclasses.replace(SPACED, demonstrations=(("hot", "cold"),), query="big", answers=("small",))
    assert write_prompt(plain, FORMATS["arrow"], leading_space=False).query == "big"
    # the rule follows the template: a letter before {x} keeps the study's space, whitespace or a line start drops it
    assert Format("x", "in={x} out={y}").keeps_space("{x}") and not Format("x", "{x}={y}").keeps_space("{x}")


@pytest.mark.parametrize(
    ("name", "template", "separator", "message"),
    [
        ("a", "{x} -> {y}.", "\n", "must hold {x} once and end with {y}"),
        ("a", "{y} <- {x}", "\n", "must hold {x} once and end with {y}"),
        ("a", "{x} {x} {y}", "\n", "must hold {x} once and end with {y}"),
        ("a", "{x} {z} {y}", "\n", "braces other than {x} and {y}"),
        ("a", "{x} -> {y}", "", "separator between demonstrations is empty"),
        ("a b", "{x} -> {y}", "\n", "use letters, digits"),
    ],
)
def test_a_bad_format_is_refused_with_what_to_write(name, template, separator, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        Format(name, template, separator)


def test_what_a_wrong_prediction_copies():
    assert copies(" big", False, "big", ["Q", ":", " big"]) == "input"
    assert copies("b", False, " big", ["Q", ":", " big"]) == "input"  # the start of the input
    assert copies("A", False, "big", ["Q", ":", " big", "\n", "A", ":"]) == "query"
    assert copies("small", False, "big", ["Q", ":", " big"]) == ""
    assert copies(" big", True, "big", [" big"]) == ""  # a right answer copies nothing
    assert copies(" ", False, "big", [" "]) == ""


def test_tokens_around_the_input_count_special_tokens():
    lm = tiny_model("llama")  # one token per character, no special tokens
    assert tokens_around_input(lm, FORMATS["arrow"], "big") == (0, 3)  # " ->"
    assert tokens_around_input(lm, FORMATS["qa"], "big") == (3, 3)  # "Q: " / "\nA:"
    assert tokens_around_input(lm, FORMATS["tab"], "big") == (0, 1)


USABLE = [UsablePair(" " + c, (" " + c.upper(),), (" " + c.upper(),)) for c in "abcdefghijklmnopqrstuvwxyz"]
TEST = sample_prompts(USABLE, SplitSizes(k=3, baseline=0, dev=0, test=4, dummies=2), seed=3)


def test_every_prediction_equals_a_direct_computation():
    lm = tiny_model("llama")
    layer = 1
    chosen = [FORMATS["paper"], FORMATS["qa"], FORMATS["tab"]]
    own_layers = {"paper": 1, "qa": 0, "tab": 2}
    table = formats_task(lm, TEST, chosen, layer, "upper", "exact", leading_space=True, own_layers=own_layers)
    data = table.to_pydict()

    def tokens(method, target, source=""):
        rows = [
            (i, t)
            for i, t, m, tg, s in zip(data["index"], data["token_id"], data["method"], data["target"], data["source"])
            if (m, tg, s) == (method, target, source)
        ]
        return [t for _, t in sorted(rows)]

    order = np.argsort([p.index for p in TEST], kind="stable")
    test = [TEST[i] for i in order]
    written = {f.name: [write_prompt(p, f, True) for p in test] for f in chosen}
    thetas = {f.name: task_vectors(lm, written[f.name], f.prompt_format())[:, layer] for f in chosen}
    for target in chosen:
        fmt = target.prompt_format()
        prompts = written[target.name]
        icl = next_tokens(lm, [fmt.render(p.demonstrations, p.query) for p in prompts])
        assert tokens("icl", target.name) == icl.tolist()
        queries = [target.query.format(x=p.query) for p in prompts]
        assert tokens("bare", target.name) == next_tokens(lm, queries).tolist()
        for source in chosen:
            patched = patched_next_tokens(lm, queries, task_vector_patch([layer] * len(queries), thetas[source.name]))
            assert tokens("tv", target.name, source.name) == patched.tolist()
        # the format's own theta at its own layer; and the bare query after a newline, patched at the study's
        own = own_layers[target.name]
        theta_own = task_vectors(lm, prompts, fmt)[:, own]
        at_own = patched_next_tokens(lm, queries, task_vector_patch([own] * len(queries), theta_own))
        assert tokens("tv_own_layer", target.name, target.name) == at_own.tolist()
        prefixed = [QUERY_PREFIX + q for q in queries]
        assert tokens("bare_prefixed", target.name) == next_tokens(lm, prefixed).tolist()
        patched = patched_next_tokens(lm, prefixed, task_vector_patch([layer] * len(queries), thetas[target.name]))
        assert tokens("tv_prefixed", target.name, target.name) == patched.tolist()
    assert len(data["task"]) == 4 * (3 + 3 + 9 + 3 + 3 + 3)
    assert set(data["layer"]) == {0, 1, 2, -1}
    # the paper's format is the study's own: its prompts are the study's, unchanged
    assert written["paper"] == test
    answers = {p.index: p.answers[0].strip() for p in TEST}
    assert data["correct"] == [p.strip() == answers[i] for p, i in zip(data["prediction"], data["index"])]


def test_a_bad_format_on_the_command_line_writes_nothing(tmp_path):
    out = tmp_path / "formats.parquet"
    missing = tmp_path / "none.parquet"
    result = run_cli(
        "formats", "--model-dir", str(tmp_path), "--tasks", str(missing), "--prompts", str(missing),
        "--results", str(missing), "--out", str(out),
        "--format", "odd", "{x} -> {y}.", "\n", check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "must hold {x} once and end with {y}" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_each_format_gets_the_layer_its_own_dev_prompts_choose():
    lm = tiny_model("llama")
    dev = sample_prompts(USABLE, SplitSizes(k=3, baseline=0, dev=4, test=0, dummies=2), seed=5)
    dev = [p for p in dev if p.split == "dev"]
    chosen = [FORMATS["paper"], FORMATS["qa"]]
    choices = own_layer_curves(lm, dev, chosen, "exact", leading_space=True)
    assert list(choices) == ["paper", "qa"]
    decode = token_decoder(lm)
    for f in chosen:
        written = [write_prompt(p, f, True) for p in dev]
        theta = task_vectors(lm, written, f.prompt_format())
        queries = [f.query.format(x=p.query) for p in written]
        curve = []
        for layer in range(theta.shape[1]):
            tokens = patched_next_tokens(lm, queries, task_vector_patch([layer] * len(queries), theta[:, layer]))
            curve.append(np.mean([decode(t).strip() == p.answers[0].strip() for t, p in zip(tokens, written)]))
        assert choices[f.name].dev_accuracy == pytest.approx(curve)
        assert choices[f.name].layer == int(np.argmax(curve))  # ties to the earliest
    assert own_layer_curves(lm, [], chosen, "exact", leading_space=True) == {}
