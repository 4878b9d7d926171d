"""The workflow's contract (taskvec.workflow.contract): the arguments each rule passes reach the
commands' parsers as params.yaml holds them, whatever quotes, braces or newlines they contain; the
settings checks; the outputs that the rules, the driver, the report and dvc.yaml share."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY_PARAMS
from taskvec import studies
from taskvec.cli import build_parser
from taskvec.errors import ConfigError
from taskvec.models import PACKAGED_MODELS
from taskvec.workflow import contract
from taskvec.workflow.contract import StudyLayout, shell
from taskvec.workflow.runner import stale_outputs

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def parsed(command: str, *words: str):
    """What the command's own parser makes of a rule's command line (as the shell splits it)."""
    return build_parser().parse_args([command, *shlex.split(" ".join(words))])


def test_the_prompt_format_reaches_extract_task_as_params_yaml_holds_it():
    config = copy.deepcopy(PARAMS)
    config["prompt"] = {
        "demonstration": 'it\'s {x} => "{y}"',
        "query": "it's {x} => \"",
        "separator": "\n\n$HOME ; `id`\t",
        "max_answer_tokens": 7,
    }
    args = parsed(
        "extract-task",
        "--task-file t --model-dir m --model-name n --prompts-out p --activations-out a --icl-out i --seeds 0",
        shell(contract.prompt_args(config)),
        shell(contract.compute_args(config)),
    )
    assert (args.demonstration, args.query, args.separator) == tuple(
        config["prompt"][key] for key in ("demonstration", "query", "separator")
    )
    assert args.max_answer_tokens == 7
    sizes = config["sizes"]
    assert (args.k, args.n_baseline, args.n_dev, args.n_test, args.n_dummies) == tuple(
        sizes[key] for key in ("k", "baseline", "dev", "test", "dummies")
    )
    assert (args.device, args.dtype, args.batch_size) == tuple(
        config["compute"][key] for key in ("device", "dtype", "batch_size")
    )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"seed": 3}, {"seed": 3, "file": None}),
        ({"leading_space": True, "one_token": False}, {"leading_space": "on", "one_token": False}),
        ({"leading_space": False, "one_token": True}, {"leading_space": "off", "one_token": True}),
        ({"leading_space": "auto", "scoring": "prefix"}, {"leading_space": "auto", "scoring": "prefix"}),
        ({"file": "my tasks/it's.jsonl"}, {"file": Path("my tasks/it's.jsonl"), "min_pairs": 5 + 1 + 2}),
    ],
    ids=["seed", "yaml-on", "yaml-off", "auto-prefix", "file-with-quote"],
)
def test_a_tasks_settings_reach_build_task(settings, expected):
    sizes = {"k": 5, "dummies": 2}
    args = parsed("build-task", "name", shell(contract.build_task_args(settings, sizes)), "--out o")
    assert {key: getattr(args, key) for key in expected} == expected


class _Files:
    """A rule's input or output files by name, as Snakemake hands them to a params function."""

    def __init__(self, **files) -> None:
        self.__dict__.update(files)


@pytest.mark.parametrize("name", list(studies.registry()))
def test_every_studys_command_line_reaches_its_parser_with_params_yaml_settings(name):
    """The rule's command line of each registered study, built from its declaration alone, parses
    with the study's own parser: the files it names arrive as given, and every setting the
    declaration places in params.yaml arrives with params.yaml's value (a method's too)."""
    study = studies.get(name)
    inputs = _Files(model="m dir", tasks=["t1", "t'2"], **{kind: [f"{kind}1", f"{kind}2"] for kind in study.inputs})
    outputs = _Files(**{data: f"out/{data}.parquet" for data in study.data})
    words = shlex.split(contract.study_command(PARAMS, name, inputs, outputs))
    assert words[:2] == ["taskvec", study.command]
    args = build_parser().parse_args(words[1:])
    assert (str(args.model_dir), [str(t) for t in args.tasks]) == ("m dir", ["t1", "t'2"])
    for kind in study.inputs:
        assert [str(f) for f in getattr(args, kind)] == [f"{kind}1", f"{kind}2"]
    for data in study.data:
        assert str(getattr(args, study.output_option(data))) == f"out/{data}.parquet"
    for option in study.all_options():
        if option.param is None:
            assert getattr(args, option.name) == (list(option.default) if option.many else option.default)
            continue
        value = PARAMS
        for part in option.param.split("."):
            value = value[part]
        if option.kind == "format":
            value = [[n, spec["demonstration"], spec.get("separator", "\n")] for n, spec in value.items()]
        elif option.unset is not None and value == option.unset:
            value = option.default
        assert getattr(args, option.name) == value, option.name


def test_a_setting_at_its_unset_value_passes_no_option():
    """function_vectors.n_heads: 0 means the paper's count scaled to the model: no --n-heads."""
    config = copy.deepcopy(PARAMS)
    config["function_vectors"].update(n_heads=0, head_prompts=4)
    assert contract.study_args(config, "function_vectors") == ["--head-prompts", "4"]
    config["function_vectors"]["n_heads"] = 3
    assert contract.study_args(config, "function_vectors") == ["--n-heads", "3", "--head-prompts", "4"]


def test_the_packaged_models_are_the_ones_taskvec_can_load():
    assert set(contract.PACKAGED_MODELS) == set(PACKAGED_MODELS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["models"].update(x={"source": "packaged:gpt5"}), r"models\.x\.source is 'packaged:gpt5'"),
        (lambda p: p["tasks"].update(reverse_words={}), r"tasks\.reverse_words is not a built-in task"),
        (lambda p: p["tasks"]["to_upper"].update(file="f.jsonl"), r"to_upper is a built-in task"),
        (lambda p: p["sizes"].update(k=40), r"tasks\.next_letter has 25 pairs, but each prompt draws 43"),
    ],
    ids=["unknown-packaged-model", "unknown-task", "file-with-a-builtin-name", "too-few-pairs"],
)
def test_settings_the_schema_cannot_check_are_refused(change, message):
    config = copy.deepcopy(TINY_PARAMS)
    change(config)
    with pytest.raises(ConfigError, match=message):
        contract.check_params(config, root=str(ROOT))


def test_the_tiny_studys_settings_pass():
    contract.check_params(TINY_PARAMS, root=str(ROOT))


def test_dvc_versions_exactly_the_folders_the_driver_cleans():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    outs = {stage: {next(iter(out)) for out in stages[stage]["outs"]} for stage in ("study", "extended")}
    assert outs["study"] == {*contract.STUDY_VERSIONED, "data/models", "reports/index.html"}
    assert outs["extended"] == set(contract.EXTENDED_VERSIONED)
    assert [next(iter(m)) for m in stages["study"]["metrics"]] == ["reports/metrics.json"]


def test_the_layout_names_every_file_of_a_study_by_its_model_and_task():
    layout = StudyLayout.of(TINY_PARAMS)
    assert layout.samples == ["sample0", "sample1"] and layout.split_seeds("to_upper") == [0, 1]
    assert layout.conflict_pairs == [("next_letter", "to_upper")]
    data = layout.study_data
    assert len(data) == 3 + 1 + 4 * 3 * 2 + 3 and len(set(data)) == len(data)
    for path in data:
        wildcards = contract.wildcards_of(path)
        assert wildcards.get("model", "smollm2-135m") == "smollm2-135m"
        assert wildcards.get("task", "next_letter") in TINY_PARAMS["tasks"]
        assert any(part in path for part in (f"/{value}" for value in wildcards.values())), path
    assert contract.wildcards_of("data/results/m/to_upper/sample1.parquet") == {"model": "m", "task": "to_upper"}
    assert contract.wildcards_of("reports/figures/tsne_m.png") == {}
    with pytest.raises(ValueError, match="not a file of the study"):
        contract.wildcards_of("elsewhere/x.parquet")
    files = layout.report_files()
    assert "reports/figures/conflicting_tasks_smollm2-135m.svg" in files
    assert layout.figure_of("reports/figures/accuracy_by_layer_smollm2-135m.png") == (
        "accuracy_by_layer",
        "smollm2-135m",
    )
    assert layout.figure_of("reports/tables/accuracy.csv") is None
    without = StudyLayout.of({**TINY_PARAMS, "tasks": {"to_upper": {}}})
    assert not any(contract.CONFLICTS in path for path in [*without.report_files(), *without.study_data])


def test_stale_extended_outputs_are_found_beside_the_current_ones(tmp_path):
    layout = StudyLayout.of(TINY_PARAMS)
    current = [*layout.extended_data, *layout.extended_report_files()]
    for path in [*current, "data/extended/retired/travel.parquet", "data/results/retired/t/sample0.parquet"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"")
    outputs = {(tmp_path / path).resolve() for path in current}
    stale = stale_outputs(tmp_path, outputs, contract.EXTENDED_VERSIONED)
    assert stale == [tmp_path / "data/extended/retired/travel.parquet"]  # the default study's folders stay


def test_a_summary_without_its_table_stops_the_stale_output_removal(tmp_path, monkeypatch):
    """The stale-output removal deletes what the summary does not list: output that is not
    Snakemake's summary table must stop it, not read as a study with no outputs."""
    from taskvec.workflow import runner

    fake = tmp_path / "snakemake"
    fake.write_text("#!/bin/sh\necho 'Building DAG of jobs...'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(runner, "_snakemake", lambda: str(fake))
    (tmp_path / "data" / "results").mkdir(parents=True)
    kept = tmp_path / "data" / "results" / "kept.parquet"
    kept.write_bytes(b"")
    with pytest.raises(RuntimeError, match="printed no table"):
        runner.remove_stale_outputs(tmp_path)
    assert kept.exists()
