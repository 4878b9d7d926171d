"""The user's own tasks from JSONL or CSV files, and every malformed-file case."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, run_cli
from taskvec.tasks.base import read_pairs

GOOD_JSONL = (
    "\n".join(json.dumps({"input": f"w{i}", "output": [f"a{i}", f"b{i}"] if i % 2 else f"a{i}"}) for i in range(12))
    + "\n"
)
GOOD_CSV = "input,output\n" + "".join(f"w{i},a{i}|b{i}\n" for i in range(12))


@pytest.mark.parametrize(("name", "content"), [("pairs.jsonl", GOOD_JSONL), ("pairs.csv", GOOD_CSV)])
def test_a_valid_file_builds_a_task_with_all_its_answers(tmp_path, name, content):
    source = tmp_path / name
    source.write_text(content)
    run_cli("build-task", "mine", "--file", str(source), "--min-pairs", "8", "--out", str(tmp_path / "mine.parquet"))
    pairs = {p.input: p.outputs for p in read_pairs(tmp_path / "mine.parquet")}
    assert len(pairs) == 12
    assert pairs["w1"] == ("a1", "b1")
    assert pairs["w2"] == (("a2",) if name.endswith(".jsonl") else ("a2", "b2"))


def test_the_example_file_in_the_readme_builds(tmp_path):
    example = ROOT / "examples" / "tasks" / "country_currency.jsonl"
    run_cli("build-task", "country_currency", "--file", str(example), "--out", str(tmp_path / "t.parquet"))
    assert len(read_pairs(tmp_path / "t.parquet")) > 200


BAD_FILES = {
    "invalid-json": ("pairs.jsonl", GOOD_JSONL.replace('{"input": "w3"', '{"input": "w3",,'), r":4: invalid JSON"),
    "missing-key": ("pairs.jsonl", GOOD_JSONL.replace('"output": "a4"', '"answer": "a4"'), r":5: missing 'output'"),
    "missing-column": ("pairs.csv", GOOD_CSV.replace("input,output", "input,answer"), r":1: missing column 'output'"),
    "empty-value": ("pairs.csv", GOOD_CSV.replace("w5,a5|b5", "w5,"), r":7: output is empty"),
    "empty-input": ("pairs.jsonl", GOOD_JSONL.replace('"input": "w6"', '"input": "  "'), r":7: input is empty"),
    "duplicate": ("pairs.csv", GOOD_CSV.replace("w7,", "w2,"), r":9: duplicate input 'w2' \(first on line 4\)"),
    "multi-line": ("pairs.jsonl", GOOD_JSONL.replace('"a8"', '"a\\nb"'), r":9: output spans several lines"),
    "too-few": ("pairs.csv", "input,output\nx,y\n", r"1 pairs, but the prompts need at least 8"),
    "invalid-csv": ("pairs.csv", 'input,output\n"w0,a0\n', r"invalid CSV|too few fields"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_malformed_file_names_file_line_and_problem_and_writes_nothing(tmp_path, case):
    name, content, message = BAD_FILES[case]
    source = tmp_path / name
    source.write_text(content)
    out = tmp_path / "out" / "mine.parquet"
    result = run_cli("build-task", "mine", "--file", str(source), "--min-pairs", "8", "--out", str(out), check=False)
    assert result.returncode == 1
    assert str(source) in result.stderr
    assert __import__("re").search(message, result.stderr), result.stderr
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))
