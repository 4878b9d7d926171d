"""The prompt-format part of "How far the task vector travels" on synthetic predictions whose right
answers are known: accuracies, the transfer matrix, paired differences, what wrong predictions copy,
and every generated sentence, edge cases included."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from taskvec.studies.formats import numbers as report
from taskvec.studies.formats import section
from taskvec.studies.formats import text as words
from taskvec.studies.formats.step import SCHEMA

N = 20  # prompts per task
NAMES = ["p", "a", "q"]


def _formats(
    icl, bare, tv, one_token=None, copied=None, before=None, tasks=("t1", "t2"), names=NAMES, extra=None, own=None
):
    """Every task alike. ``icl``/``bare``/``one_token``: target -> share; ``tv``: (source, target) -> share;
    the first round(share * N) prompts (by index, rows written in reverse) are right. Wrong task-vector
    predictions are all "Z" and copy as ``copied[target]`` says ((input share, query share)); ICL's
    predictions are all different. ``before``: target -> tokens before the input in its bare query.
    ``extra``: intervention method -> target -> share; ``own``: target -> its own dev layer."""
    one_token, copied, before = one_token or {}, copied or {}, before or {}
    columns = {name: [] for name in SCHEMA.names}

    def add(task, target, source, method, share, index):
        right = index < round(share * N)
        if method == "tv" and not right:
            to_input, to_query = copied.get(target, (0, 0))
            wrong = N - round(share * N)
            rank = index - round(share * N)
            copy = "input" if rank < to_input * wrong else "query" if rank < (to_input + to_query) * wrong else ""
            prediction = "Z"
        else:
            copy, prediction = "", f"{method}{index}"
        one = index < round(one_token.get(target, 1.0) * N)
        row = (task, target, source, method, index, -1 if method != "tv" else 4, 0, prediction, right, one, copy)
        for name, item in zip(SCHEMA.names, row):
            columns[name].append(item)

    for task in tasks:
        for index in reversed(range(N)):
            for b in names:
                add(task, b, "", "icl", icl[b], index)
                add(task, b, "", "bare", bare[b], index)
                for a in names:
                    add(task, b, a, "tv", tv[(a, b)], index)
                for method, shares in (extra or {}).items():
                    add(task, b, b if method.startswith("tv") else "", method, shares[b], index)
    metadata = {
        "model_name": "toy",
        "layers": {t: 4 for t in tasks},
        "formats": [
            {"name": b, "demonstration": f"{b}:{{x}}\t{{y}}", "query": f"{b}:{{x}}\t", "separator": "\n"} for b in names
        ],  # fmt: skip
        "query_tokens": {
            t: {b: {"tokens": [b, ":", "x", "\t"], "around_input": [before.get(b, 2), 1]} for b in names} for t in tasks
        },
        "own_layers": {t: {b: {"layer": (own or {}).get(b, 4), "dev_accuracy": []} for b in names} for t in tasks},
        "query_prefix": "\n",
        "study_format": [["p:{x}\t{y}", "p:{x}\t", "\n"]],  # p is the study's own format
    }
    return report.read_formats(pa.table(columns, schema=SCHEMA), metadata)


BY_QUERY = _formats(
    icl={"p": 0.9, "a": 0.8, "q": 0.5},
    bare={"p": 0.1, "a": 0.0, "q": 0.0},
    tv={(s, t): {"p": 0.8, "a": 0.0, "q": 0.5}[t] for s in NAMES for t in NAMES},  # the bare query decides
    one_token={"q": 0.5},
    copied={"a": (0.5, 0.25)},
    before={"a": 0},
)


def test_accuracies_follow_the_rows_in_prompt_order():
    task = BY_QUERY.tasks["t2"]
    assert task.layer == 4 and BY_QUERY.names == NAMES
    assert task.icl["p"].tolist() == [True] * 18 + [False] * 2
    assert task.accuracy("tv", "q", "p") == 0.5 and task.accuracy("tv", "p") == 0.8
    assert task.one_token["q"].mean() == 0.5 and BY_QUERY.input_first() == ["a"]
    assert report.sameness(BY_QUERY, ["t1"], "a") == 1.0 and report.sameness(BY_QUERY, ["t1"], "a", "icl") == 0.05
    assert report.copy_shares(BY_QUERY, ["t1", "t2"], "a") == (40, 0.5, 0.25)


def test_sentences_where_the_bare_query_decides():
    sentences = words.summary_sentences(BY_QUERY, ["t1", "t2"])
    text = " ".join(sentences)
    assert "Over the 2 tasks where ICL works, ICL ranges over the 3 formats from 0.50 [" in text
    assert (
        "(q) to 0.90 [" in text
        and "the task vector, patched into its own format's bare query, from 0.00 [0.00, 0.09] (a) to 0.80 [" in text
    )
    assert "keeps the most of ICL's accuracy in q (100%) and the least in a (0%: 0.00 against 0.80)" in text
    # own and other formats are the same per prompt here: the difference is exactly 0, its interval too
    assert (
        "against 0.43 [" in text
        and "(+0.00 [+0.00, +0.00], paired on the same queries): the difference is not significant" in text
    )
    assert "varies more with the format of the bare query than with the format theta came from" in text
    assert "column means run from 0.00 [0.00, 0.00] (a) to 0.80 [" in text and "row means from 0.43 [" in text
    assert "Where the bare query begins with its input (a: no token before it" in text
    assert "the task vector reaches 0.00 [0.00, 0.00] against ICL's 0.80 [" in text
    assert "where other tokens come first (p and q), 0.65 [" in text and "against 0.70 [" in text
    assert "format by format, the task vector p " in text and "(a group's mean can hide one format)." in text
    assert "50% of its 40 wrong predictions there repeat the start of the input" in text
    assert (
        "In a (the task vector's weakest format) its most common prediction makes 100% of a task's predictions" in text
    )
    assert (
        "against 5% for ICL in the same format; of its 40 wrong predictions there, 50% repeat the start of the "
        "query's input and 25% another token" in text
    )
    assert "one token for 100% of the queries in p and a down to 50% in q" in text


def test_sentences_where_theta_stays_in_its_own_format():
    own = _formats(
        icl={b: 1.0 for b in NAMES},
        bare={b: 0.0 for b in NAMES},
        tv={(s, t): 0.9 if s == t else 0.1 for s in NAMES for t in NAMES},
        copied={b: (0.0, 1.0) for b in NAMES},
    )
    text = " ".join(words.summary_sentences(own, ["t1", "t2"]))
    assert "ICL ranges over the 3 formats 1.00 [0.91, 1.00] in every format" in text
    assert "the task vector, patched into its own format's bare query, 0.90 [" in text and "in every format." in text
    assert "theta reaches 0.10 [" in text and "(-0.80 [-0." in text and "it loses accuracy significantly" in text
    assert "varies as much with the format theta came from as with the format of the bare query" in text
    assert "In every format the bare query has at least one token before its input" in text
    assert "Where the bare query begins" not in text and "one token for" not in text  # every answer one token
    metrics = report.model_metrics(own, ["t1", "t2"])
    assert metrics["tv_other_minus_own"]["mean"] == -0.8 and metrics["tv_other_minus_own"]["ci"][1] < 0
    assert metrics["transfer"]["p"]["p"]["mean"] == 0.9 and metrics["transfer"]["p"]["a"]["mean"] == 0.1
    assert metrics["formats"]["a"]["tv_wrong_copies_query"] == 1.0 and metrics["formats"]["a"]["input_first"] is False
    assert metrics["formats"]["a"]["demonstration"] == "a:{x}\t{y}"


def test_icl_at_zero_and_no_kept_task():
    zero = _formats(
        icl={"p": 0.0, "a": 0.5, "q": 0.5},
        bare={b: 0.0 for b in NAMES},
        tv={(s, t): 0.25 for s in NAMES for t in NAMES},
    )
    text = " ".join(words.summary_sentences(zero, ["t1"]))
    assert "Over the one task where ICL works" in text
    assert (
        "keeps the most of ICL's accuracy in a and q (50% each, a tie at this precision) and the least in a and q (50%"
        in text
    )  # p: ICL at 0
    assert words.summary_sentences(zero, []) == [
        "ICL beats the baseline by 0.2 on none of the tasks, so no mean is given."
    ]
    assert report.model_metrics(zero, [])["n_tasks"] == 0 and "transfer" not in report.model_metrics(zero, [])
    rows = section.transfer_rows(zero, [])
    assert len(rows) == 9 and all(r["tv"] is None and r["n_tasks"] == 0 for r in rows)
    page = section.section_html([(zero, [], words.summary_sentences(zero, []), {"png": b"", "svg": b""})])
    assert "n/a" in page and "<code>p:{x}\\t{y}</code>" in page


def test_one_format_gives_one_sentence():
    one = _formats(icl={"p": 0.6}, bare={"p": 0.0}, tv={("p", "p"): 0.3}, names=["p"])
    [sentence] = words.summary_sentences(one, ["t1", "t2"])
    match = re.fullmatch(
        r"Over the 2 tasks where ICL works, in the one format \(p\) ICL reaches 0\.60 \[(.*), (.*)\] and the task "
        r"vector 0\.30 \[(.*), (.*)\]\.",
        sentence,
    )
    assert match is not None, sentence
    low, high, tv_low, tv_high = map(float, match.groups())
    assert low < 0.6 < high and tv_low < 0.3 < tv_high and high < 1 and tv_low > 0


def test_tables_and_the_figure():
    rows = section.table_rows(BY_QUERY)
    assert rows[0] == {
        "model": "toy", "task": "t1", "layer": 4, "icl_p": 0.9, "bare_p": 0.1, "tv_p": 0.8, "icl_a": 0.8,
        "bare_a": 0.0, "tv_a": 0.0, "icl_q": 0.5, "bare_q": 0.0, "tv_q": 0.5,
    }  # fmt: skip
    transfer = {(r["source"], r["target"]): r for r in section.transfer_rows(BY_QUERY, ["t1", "t2"])}
    assert (
        transfer[("q", "p")]["tv"] == 0.8 and transfer[("q", "p")]["ci_low"] <= 0.8 <= transfer[("q", "p")]["ci_high"]
    )
    figure = section.transfer_figure(BY_QUERY, ["t1", "t2"])
    assert figure["png"].startswith(b"\x89PNG") and b"<svg" in figure["svg"]
    assert figure == section.transfer_figure(BY_QUERY, ["t1", "t2"])  # byte-identical
    metrics = report.task_metrics(BY_QUERY)["t1"]
    assert np.isclose(metrics["tv_by_format"]["p"], 0.8) and metrics["tv_transfer"]["q"]["a"] == 0.0
    low, high = metrics["icl_by_format_ci"]["q"]
    assert metrics["icl_by_format"]["q"] == 0.5 and low < 0.5 < high and metrics["bare_by_format_ci"]["a"][0] == 0


def test_formats_whose_bare_queries_differ_only_in_the_replaced_token_are_named():
    same = _formats(
        icl={b: 0.8 for b in NAMES},
        bare={b: 0.0 for b in NAMES},
        tv={(s, t): {"p": 0.8, "a": 0.3, "q": 0.3}[t] for s in NAMES for t in NAMES},
    )
    assert report.identical_targets(same) == [["a", "q"]] and report.identical_targets(BY_QUERY) == []
    text = " ".join(words.summary_sentences(same, ["t1", "t2"]))
    assert "The bare queries of a and q give the same task-vector prediction for every query of every task" in text
    assert "give the same task-vector prediction" not in " ".join(words.summary_sentences(BY_QUERY, ["t1", "t2"]))


def test_the_bootstrap_runs_once_per_set_of_tasks_and_gives_what_a_fresh_one_does():
    fresh = _formats(icl={"p": 0.9, "a": 0.8, "q": 0.5}, bare={b: 0.0 for b in NAMES},
                     tv={(s, t): 0.5 for s in NAMES for t in NAMES})  # fmt: skip
    means, draws = fresh.draws(["t1", "t2"])
    assert fresh.draws(["t1", "t2"])[1] is draws  # the same resamples for sentences, metrics and page
    again, redrawn = fresh._bootstrap(["t1", "t2"])
    assert again == means and all(np.array_equal(redrawn[k], draws[k]) for k in draws)
    assert fresh.draws(["t1"])[0]["icl:p"] == 0.9


def test_the_interventions_sentences_state_what_they_show_with_paired_adjusted_intervals():
    # a bare query that begins with its input (a: no token before it) collapses; a newline before it
    # recovers most of the gap to ICL; each format's own layer changes nothing for p and q, helps a
    result = _formats(
        icl={"p": 0.8, "a": 0.8, "q": 0.8},
        bare={b: 0.0 for b in NAMES},
        tv={(s, t): 0.2 if t == "a" else 0.7 for s in NAMES for t in NAMES},
        before={"a": 0},
        extra={
            "tv_own_layer": {"p": 0.7, "a": 0.5, "q": 0.7},
            "bare_prefixed": {"p": 0.0, "a": 0.0, "q": 0.0},
            "tv_prefixed": {"p": 0.7, "a": 0.65, "q": 0.7},
        },
        own={"a": 6},
    )
    text = " ".join(words.summary_sentences(result, ["t1", "t2"]))
    assert (
        "With each format's own layer, chosen on the dev prompts written in it (2 of the 4 task and format choices "
        "outside the study's own format differ from its layer), the task vector reaches p 0.70 (at the paper "
        "format's layer 0.70), a 0.50 (at the paper format's layer 0.20), q 0.70 (at the paper format's layer 0.70); "
        "over the formats that "
        "changes it by +0.10 [" in text
    )
    assert (
        "With '\\n' before the bare query, in the formats whose bare query begins with its input (a), the task "
        "vector goes from 0.20 to 0.65 (+0.45 ["
        in text
        and "significantly, 75% of its gap to ICL (0.80)); the unpatched bare query changes by +0.00 [" in text
    )
    assert (
        "In the formats with tokens before the input (p and q), the same prefix changes the task vector by +0.00"
        in (text)
        and "format by format, p +0.00, q +0.00." in text
    )
    metrics = report.model_metrics(result, ["t1", "t2"])
    assert metrics["tv_prefixed_minus_plain"]["formats"] == ["a"] and metrics["tv_prefixed_minus_plain"]["mean"] == 0.45
    assert metrics["formats"]["a"]["tv_own_layer"]["mean"] == 0.5
    assert metrics["contrast_intervals"] == "paired bootstrap, Bonferroni-adjusted over 5 contrasts"
    # the adjusted interval is wider than the unadjusted 95% one of the same contrast
    means, draws = result.draws(["t1", "t2"])
    difference = draws["tv_prefixed:a"] - draws["tv:a:a"]
    unadjusted = np.percentile(difference, [2.5, 97.5])
    low, high = metrics["tv_prefixed_minus_plain"]["ci"]
    assert low <= unadjusted[0] and high >= unadjusted[1]


def test_shares_written_alike_are_named_as_a_tie():
    result = _formats(
        icl={"p": 0.8, "a": 0.85, "q": 0.8},
        bare={b: 0.0 for b in NAMES},
        # p: 0.75 / 0.8 = 93.75%, a: 0.8 / 0.85 = 94.1%: different, but both written 94% (a tie as written)
        tv={(s, t): {"p": 0.75, "a": 0.8, "q": 0.5}[t] for s in NAMES for t in NAMES},
    )
    text = " ".join(words.summary_sentences(result, ["t1", "t2"]))
    assert "keeps the most of ICL's accuracy in p and a (94% each, a tie at this precision)" in text
