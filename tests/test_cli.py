"""Command-line errors a user can hit: each says what is wrong and writes nothing."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess

from conftest import BIN, ROOT


def _taskvec(*args: str, cwd) -> subprocess.CompletedProcess:
    """`taskvec ARGS` in ``cwd``, through the console script's own entry point (``cli.main``) in this
    process (a fresh interpreter per call would cost a second of imports): the exit status, what it
    printed, and its log and errors as stderr. The console script itself runs in every workflow test."""
    from taskvec import cli

    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exit:  # argparse's refusals
                code = exit.code
    finally:
        os.chdir(previous)
        logging.getLogger().removeHandler(handler)
    return subprocess.CompletedProcess(["taskvec", *args], code, out.getvalue(), err.getvalue())


def test_extract_task_needs_one_output_file_of_each_kind_per_seed(tmp_path):
    result = _taskvec(
        "extract-task",
        "--task-file",
        "t.parquet",
        "--model-dir",
        "m",
        "--seeds",
        "0",
        "1",
        "--prompts-out",
        "p0.parquet",
        "p1.parquet",
        "--activations-out",
        "a0.parquet",
        "--icl-out",
        "i0.parquet",
        "i1.parquet",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "one prompts, activations and ICL file per seed (2 seeds: 2, 1 and 2 files)" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_extract_task_refuses_repeated_seeds(tmp_path):
    result = _taskvec(
        "extract-task",
        "--task-file",
        "t.parquet",
        "--model-dir",
        "m",
        "--seeds",
        "3",
        "3",
        "--prompts-out",
        "p0",
        "p1",
        "--activations-out",
        "a0",
        "a1",
        "--icl-out",
        "i0",
        "i1",
        cwd=tmp_path,
    )
    assert result.returncode == 1 and "split seeds must differ" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_conflicting_tasks_rejects_a_malformed_pair(tmp_path):
    result = _taskvec(
        "conflicting-tasks",
        "--model-dir",
        "m",
        "--model",
        "x",
        "--pairs",
        "next_letter",
        "--out",
        "c.parquet",
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "a pair is TASK_A:TASK_B" in result.stderr


def test_tasks_lists_each_tasks_rules_and_how_it_differs_from_the_paper(tmp_path):
    result = _taskvec("tasks", cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert text.count("differs from the paper:") == 18
    assert "present_simple_past_simple" in text and "one_token=true leading_space=auto scoring=exact" in text
    assert "country_capital" in text and "one_token=false leading_space=off scoring=prefix" in text


def test_build_task_records_the_rules_given_on_the_command_line(tmp_path):
    import json

    from taskvec import store

    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps({"input": f"w{i}", "output": f"a{i}"}) + "\n" for i in range(10)))
    out = tmp_path / "mine.parquet"
    result = _taskvec(
        "build-task",
        "mine",
        "--file",
        str(source),
        "--one-token",
        "--leading-space",
        "auto",
        "--scoring",
        "exact",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert store.parquet_metadata(out)["rules"] == {"one_token": True, "leading_space": "auto", "scoring": "exact"}
    default = tmp_path / "default.parquet"
    _taskvec("build-task", "mine", "--file", str(source), "--out", str(default), cwd=tmp_path)
    assert store.parquet_metadata(default)["rules"] == {"one_token": False, "leading_space": "off", "scoring": "prefix"}
    bad = _taskvec(
        "build-task", "mine", "--file", str(source), "--scoring", "fuzzy", "--out", str(tmp_path / "b"), cwd=tmp_path
    )
    assert bad.returncode == 2 and "invalid choice: 'fuzzy'" in bad.stderr and not (tmp_path / "b").exists()


def test_an_error_is_one_line_and_verbose_adds_its_traceback(tmp_path):
    quiet = _taskvec("build-task", "nope", "--out", "t.parquet", cwd=tmp_path)
    assert quiet.returncode == 1 and "unknown task 'nope'" in quiet.stderr and "Traceback" not in quiet.stderr
    verbose = _taskvec("-v", "build-task", "nope", "--out", "t.parquet", cwd=tmp_path)
    assert verbose.returncode == 1 and "unknown task 'nope'" in verbose.stderr
    assert "Traceback (most recent call last)" in verbose.stderr and "get_task" in verbose.stderr
    assert not (tmp_path / "t.parquet").exists()


def test_an_error_says_what_is_wrong_and_the_fix_and_v_adds_the_traceback(tmp_path):
    args = ("extract", "--model-dir", str(tmp_path), "--prompts", str(tmp_path / "p.parquet"), "--out", "a.parquet")
    args += ("--icl-out", "i.parquet")
    result = _taskvec(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert "p.parquet does not exist" in result.stderr
    assert "to fix: `taskvec make-prompts` makes it" in result.stderr
    assert "in a study: `make reproduce` remakes a study's missing files" in result.stderr
    assert "Traceback" not in result.stderr
    verbose = _taskvec("-v", *args, cwd=tmp_path)
    assert verbose.returncode == 1
    assert "Traceback (most recent call last)" in verbose.stderr and "ArtifactError" in verbose.stderr
    assert not (tmp_path / "a.parquet").exists()


def test_every_error_a_user_can_act_on_carries_a_fix():
    from taskvec import errors

    kinds = [k for k in vars(errors).values() if isinstance(k, type) and issubclass(k, errors.TaskvecError)]
    assert len(kinds) >= 6
    for kind in kinds:
        if kind is errors.TaskvecError:
            continue
        error = kind("something is wrong")
        assert error.fix, kind.__name__
        assert str(error) == f"something is wrong\n  to fix: {error.fix}"
        # the library's own advice speaks to library users; a study's edits are the CLI's extra line
        assert "params.yaml" not in error.fix and "make reproduce" not in error.fix, kind.__name__
        assert str(kind("x", fix="do this")).endswith("to fix: do this")


BUILD_PARSER = """
import sys
from pathlib import Path
import taskvec.cli
taskvec.cli.build_parser()
root = Path(taskvec.cli.__file__).parent
for name, module in sorted(sys.modules.items()):
    if name.split(".")[0] == "taskvec" and getattr(module, "__file__", None):
        print(Path(module.__file__).relative_to(root))
print("torch" if "torch" in sys.modules else "")
"""


def test_building_every_parser_runs_no_library_code():
    """Every run of `taskvec` builds every group's parser; so that a step's code inputs can leave out
    the other groups' modules, building them imports nothing but the CLI, its errors, the subcommand
    modules, the method registry's declarations (whose `--method` choices, help and settings the
    parsers show) and the studies' declarations (each extended study's subcommand), and no torch (a
    new group of subcommands then reruns no existing step)."""
    out = subprocess.run([str(BIN / "python"), "-c", BUILD_PARSER], capture_output=True, text=True, check=True)
    imported = set(out.stdout.split())
    assert "torch" not in imported
    assert {"cli.py", "commands/steps.py", "commands/report.py", "methods/__init__.py"} <= imported
    source = ROOT / "src" / "taskvec"
    assert imported - {"__init__.py", "cli.py", "errors.py", "defaults.py"} <= {
        path.relative_to(source).as_posix()
        for folder, pattern in (("commands", "*.py"), ("methods", "*.py"), ("studies", "*/__init__.py"))
        for path in (source / folder).glob(pattern)
    } | {"studies/__init__.py", "studies/base.py"}
    assert "methods/heads.py" not in imported and "methods/search.py" not in imported
    from taskvec.codedeps import command_files

    extract = {path.relative_to(ROOT / "src" / "taskvec").as_posix() for path in command_files("extract-task")}
    assert "commands/steps.py" in extract and "commands/report.py" not in extract


def test_compute_settings_are_checked_before_anything_runs(tmp_path):
    """A batch size of 0, an unknown device or dtype is refused by the parser (status 2), naming the
    argument, for the study's steps and for bench-random alike; nothing is written."""
    evaluate = ("evaluate", "--model-dir", "m", "--prompts", "p", "--activations", "a", "--icl", "i", "--out", "o")
    zero = _taskvec(*evaluate, "--batch-size", "0", cwd=tmp_path)
    assert zero.returncode == 2 and "--batch-size: must be a positive integer, got 0" in zero.stderr
    for args in (("bench-random", "--device", "gpu"), (*evaluate, "--device", "gpu")):
        result = _taskvec(*args, cwd=tmp_path)
        assert result.returncode == 2 and "a device is cpu, cuda, cuda:N or auto, got 'gpu'" in result.stderr
    dtype = _taskvec("bench-random", "--dtype", "fp8", cwd=tmp_path)
    assert dtype.returncode == 2 and "--dtype: invalid choice: 'fp8'" in dtype.stderr
    assert list(tmp_path.iterdir()) == []


def _code(subcommand: str) -> set[str]:
    from taskvec.codedeps import command_files

    return {path.relative_to(ROOT / "src" / "taskvec").as_posix() for path in command_files(subcommand)}


def test_each_steps_code_inputs_are_what_its_command_runs():
    """The study's steps depend on the code they run and no other: scoring and patching code is the
    evaluation's alone, extraction code is both (evaluation reads the extraction's files), and neither
    reaches the task builds or the model conversion (taskvec.codedeps, by function)."""
    extraction, evaluation = _code("extract-task"), _code("evaluate")
    evaluation_only = {"scoring.py", "evaluate.py", "hooks/patch.py", "forward/patched.py", "jobs/evaluation.py"}
    extraction_code = {"extract.py", "hooks/capture.py", "forward/capture.py", "jobs/extraction.py", "prompts.py"}
    assert evaluation_only <= evaluation and not evaluation_only & extraction
    assert extraction_code <= extraction and extraction_code <= evaluation
    for step in ("build-task", "convert-model"):
        assert not (evaluation_only | extraction_code) & _code(step), step
    assert "tasks/algorithmic.py" not in _code("convert-model") and "models.py" not in _code("build-task")


def test_an_internal_error_keeps_its_traceback_and_only_a_users_error_is_one_line(monkeypatch, caplog):
    """A bug inside a step (here a KeyError) is not dressed up as a one-line user error: it propagates
    with its traceback; an error the user can act on prints as its message and fix, status 1."""
    import argparse

    import pytest

    from taskvec import cli
    from taskvec.errors import ConfigError

    parser = argparse.ArgumentParser()
    parser.add_argument("-v", "--verbose", action="store_true")
    monkeypatch.setattr(cli, "build_parser", lambda: parser)

    def broken(args):
        raise KeyError("internal")

    parser.set_defaults(func=broken)
    with pytest.raises(KeyError, match="internal"):
        cli.main([])

    def refused(args):
        raise ConfigError("bad setting", "change it")

    parser.set_defaults(func=refused)
    assert cli.main([]) == 1
    assert "bad setting\n  to fix: change it\n  in a study: the study's settings are in params.yaml" in caplog.text


def test_the_commands_defaults_are_the_librarys():
    """A step run without an option behaves as the library called without the argument: the parsers'
    defaults and the settings objects' come from taskvec.defaults, and agree field by field."""
    import inspect

    from taskvec import api
    from taskvec.cli import build_parser
    from taskvec.compute import Compute
    from taskvec.prompts import PromptFormat, SplitSizes

    required = "--task-file t --model-dir m --model-name n --prompts-out p --activations-out a --icl-out i --seeds 0"
    args = build_parser().parse_args(["extract-task", *required.split()])
    assert PromptFormat(args.demonstration, args.query, args.separator, args.max_answer_tokens) == PromptFormat()
    assert SplitSizes(args.k, args.n_baseline, args.n_dev, args.n_test, args.n_dummies) == SplitSizes()
    assert Compute(args.device, args.dtype, args.batch_size, args.threads) == Compute()
    one_off = build_parser().parse_args(["vector", "--model", "m", "--demos", "d", "--out", "o"])
    assert (
        PromptFormat(
            one_off.demonstration_template, one_off.query_template, one_off.separator, one_off.max_answer_tokens
        )
        == PromptFormat()
    )
    library = inspect.signature(api.task_vector).parameters
    for option in ("k", "contexts", "dummies", "batch_size"):
        assert getattr(one_off, option) == library[option].default, option
