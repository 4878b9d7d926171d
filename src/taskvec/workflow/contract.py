"""The workflow's contract, in one place: what params.yaml may hold beyond its schema, the arguments
each step's command gets, and every file the default study and the extended studies make.

The Snakefile's rules (workflow/rules/common.smk), the driver's stale-output removal
(:mod:`taskvec.workflow.runner`), the report's figure list and dvc.yaml's outputs all read this module
(dvc.yaml, being YAML, is tested against it). It imports nothing heavy, so Snakemake parses the
workflow quickly. Arguments are argument lists, joined for the shell by :func:`shell`, which quotes
each one: nothing here is quoted by hand.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping, Sequence

from taskvec import studies
from taskvec.analysis.pairs import pairs_in
from taskvec.config import check_pairs_available
from taskvec.errors import ConfigError

#: The models packaged with taskvec (``source: packaged:<name>``; taskvec.models holds how to load them).
PACKAGED_MODELS = ("smollm2-135m", "gemma3-270m")

#: The default study's steps that run a model, in the chain's order (their Snakemake benchmark files,
#: ``logs/benchmarks/<step>/``, give the report's time per step and `taskvec bench`'s study time; the
#: extended studies' steps are not among them).
STUDY_STEPS = ("extract_activations", "evaluate_task", "conflicting_tasks", "robustness", "vocabulary_projection")

#: Where each study's outputs live (what DVC versions, stage by stage): anything there that the workflow
#: no longer makes (a task or model since removed from params.yaml) is removed after a complete run.
#: data/models is versioned too, a directory per model (see :func:`taskvec.workflow.runner.stale_outputs`).
STUDY_VERSIONED = (
    "data/tasks",
    "data/prompts",
    "data/activations",
    "data/icl",
    "data/results",
    "data/analysis",
    "reports/tables",
    "reports/figures",
)
EXTENDED_VERSIONED = ("data/extended", "reports/extended")

#: The (model, task) steps' files, one per split seed: data/<step>/<model>/<task>/sample<i>.parquet.
PER_SAMPLE_STEPS = ("prompts", "activations", "icl", "results")
ANALYSES = ("robustness", "vocabulary")
CONFLICTS = "conflicting_tasks"  # an analysis, table and figure, where params.yaml holds a conflicting pair

REPORT_TABLES = ("accuracy", "accuracy_by_layer", "paper_comparison", "robustness", "vocabulary")
REPORT_FIGURES = ("accuracy_summary", "accuracy_by_layer", "tsne", "distances")
#: Each figure's section in `snakemake --report`.
FIGURE_CATEGORIES = {
    "accuracy_summary": "1. Accuracy",
    "accuracy_by_layer": "2. Accuracy by layer",
    CONFLICTS: "3. Conflicting tasks",
    "tsne": "4. Robustness",
    "distances": "4. Robustness",
}
FIGURE_FORMATS = ("png", "svg")
TABLE_FORMATS = ("csv", "md")

# the extended studies' outputs: each study declares its own (taskvec.studies), nothing is listed here
EXTENDED_DATA = studies.data_names()  # data/extended/<model>/<name>.parquet
EXTENDED_TABLES = studies.table_names()
EXTENDED_FIGURES = studies.figure_names()

# build-task's own options for the rendering and scoring rules (params.yaml's names)
_SIZE_FLAGS = (("k", "k"), ("n-baseline", "baseline"), ("n-dev", "dev"), ("n-test", "test"), ("n-dummies", "dummies"))


def shell(args: Sequence[object]) -> str:
    """``args`` as one shell word each (quoted where needed), for a rule's command."""
    return shlex.join(str(arg) for arg in args)


def check_params(config: Mapping, root: str = ".") -> None:
    """What params.yaml's schema cannot say: packaged models exist, a task is built-in or names a file
    (and a file's task does not take a built-in name), and every task has the pairs one prompt draws.
    Raises :class:`~taskvec.errors.ConfigError` before any job runs."""
    from taskvec.tasks import TASKS as BUILTIN_TASKS

    for name, model in config["models"].items():
        source = model["source"]
        if source.startswith("packaged:") and source.removeprefix("packaged:") not in PACKAGED_MODELS:
            raise ConfigError(
                f"params.yaml: models.{name}.source is {source!r}; packaged models are "
                + ", ".join(f"packaged:{m}" for m in PACKAGED_MODELS),
                fix="name a packaged model, a Hugging Face model id or a local model directory",
            )
    for name, task in config["tasks"].items():
        if "file" not in task and name not in BUILTIN_TASKS:
            raise ConfigError(
                f"params.yaml: tasks.{name} is not a built-in task and names no file; built-in tasks are "
                + ", ".join(BUILTIN_TASKS),
                fix=f"for a task of your own, give its file: tasks.{name}.file: path/to/pairs.jsonl",
            )
        if "file" in task and name in BUILTIN_TASKS:
            raise ConfigError(
                f"params.yaml: tasks.{name}: {name} is a built-in task", fix="give your file's task another name"
            )
    check_pairs_available(config["tasks"], config["sizes"], root)
    check_method_settings(config)


def build_task_args(settings: Mapping, sizes: Mapping) -> list[str]:
    """build-task's options for one task of params.yaml: the seed, a task file of one's own (with the
    pairs one prompt draws), and the rendering and scoring rules params.yaml sets (unset ones keep the
    task's own: the paper's, for a built-in task)."""
    args = ["--seed", str(settings.get("seed", 0))]
    if "file" in settings:
        args += ["--file", settings["file"], "--min-pairs", str(sizes["k"] + 1 + sizes["dummies"])]
    if "one_token" in settings:
        args.append("--one-token" if settings["one_token"] else "--no-one-token")
    if "leading_space" in settings:
        value = settings["leading_space"]  # YAML reads a bare on/off as true/false
        args += ["--leading-space", "on" if value is True else "off" if value is False else str(value)]
    if "scoring" in settings:
        args += ["--scoring", settings["scoring"]]
    return args


def prompt_args(config: Mapping) -> list[str]:
    """The prompt sizes and format, as extract-task's options."""
    args = [item for flag, key in _SIZE_FLAGS for item in (f"--{flag}", str(config["sizes"][key]))]
    for name in ("demonstration", "query", "separator"):
        args += [f"--{name}", config["prompt"][name]]
    return args + ["--max-answer-tokens", str(config["prompt"]["max_answer_tokens"])]


def compute_args(config: Mapping) -> list[str]:
    compute = config["compute"]
    return [
        "--device",
        str(compute["device"]),
        "--dtype",
        str(compute["dtype"]),
        "--batch-size",
        str(compute["batch_size"]),
    ]


def check_method_settings(config: Mapping) -> None:
    """params.yaml's ``methods`` block beside ``pool``: each registered method's own settings, checked
    against the schema derived from the registry (:func:`taskvec.methods.settings_schema`), and their
    defaults filled in, as the file's schema does for everything else."""
    import jsonschema

    from taskvec import methods

    properties = methods.settings_schema()
    block = config.setdefault("methods", {})
    schema = {"type": "object", "properties": {"pool": {"type": "integer"}, **properties}}
    schema["additionalProperties"] = False
    try:
        jsonschema.validate(dict(block), schema)
    except jsonschema.ValidationError as error:
        where = ".".join(["methods", *map(str, error.absolute_path)])
        raise ConfigError(
            f"params.yaml: {where}: {error.message}",
            fix="the method settings are " + (", ".join(properties) or "none") + " (`taskvec compare-methods --help`)",
        ) from None
    for name, entry in properties.items():
        block.setdefault(name, entry["default"])


def study_args(config: Mapping, name: str) -> list[str]:
    """The options the extended study ``name``'s command gets from params.yaml: each setting its
    declaration places there (:class:`taskvec.studies.base.Option`), none kept here by hand."""
    args: list[str] = []
    for option in studies.get(name).all_options():
        if option.param is None:
            continue
        value = config
        for part in option.param.split("."):
            value = value[part]
        if option.unset is not None and value == option.unset:
            continue
        if option.kind == "format":  # `--format NAME DEMONSTRATION SEPARATOR` for each format
            for format_name, spec in value.items():
                args += [option.flag, format_name, spec["demonstration"], spec.get("separator", "\n")]
        else:
            args += [option.flag, *map(str, value if option.many else [value])]
    return args


def study_command(config: Mapping, name: str, inputs, outputs) -> str:
    """The extended study ``name``'s shell line for one model: ``taskvec <its subcommand>`` with the
    model, the task files, the first-sampling files it reads (``inputs``, by name), the files it writes
    (``outputs``, by data name) and :func:`study_args`; every part from its declaration."""
    study = studies.get(name)

    def files(value) -> list[str]:
        return [value] if isinstance(value, str) else list(value)

    args = ["taskvec", study.command, "--model-dir", inputs.model, "--tasks", *files(inputs.tasks)]
    for kind in study.inputs:
        args += [f"--{kind}", *files(getattr(inputs, kind))]
    for data in study.data:
        args += ["--" + study.output_option(data).replace("_", "-"), getattr(outputs, data)]
    return shell(args + study_args(config, name))


@dataclasses.dataclass(frozen=True)
class StudyLayout:
    """Every file of one params.yaml's study, by where it lives. Paths are relative to the project;
    ``"{model}"`` and ``"{task}"`` stay as Snakemake wildcards where a rule passes them."""

    models: tuple[str, ...]
    tasks: tuple[str, ...]
    first_seeds: Mapping[str, int]
    n_samples: int

    @classmethod
    def of(cls, config: Mapping) -> StudyLayout:
        tasks = config["tasks"]
        return cls(
            tuple(config["models"]),
            tuple(tasks),
            {name: int(settings.get("seed", 0)) for name, settings in tasks.items()},
            int(config["sizes"]["seeds"]),
        )

    @property
    def samples(self) -> list[str]:
        return [f"sample{i}" for i in range(self.n_samples)]

    def split_seeds(self, task: str) -> list[int]:
        """A task's split seeds: its seed, then the next ones, one per sample."""
        return [self.first_seeds[task] + i for i in range(self.n_samples)]

    def per_sample(self, step: str, model: str = "{model}", task: str = "{task}") -> list[str]:
        return [f"data/{step}/{model}/{task}/{sample}.parquet" for sample in self.samples]

    def first_sample(self, step: str, model: str) -> list[str]:
        """One model's files of every task on the first sampling (what the analyses of theta read)."""
        return [f"data/{step}/{model}/{task}/{self.samples[0]}.parquet" for task in self.tasks]

    def every_sample(self, step: str) -> list[str]:
        return [path for model in self.models for task in self.tasks for path in self.per_sample(step, model, task)]

    @property
    def conflict_pairs(self) -> list[tuple[str, str]]:
        return pairs_in(self.tasks)

    @property
    def conflict_tasks(self) -> list[str]:
        return sorted({task for pair in self.conflict_pairs for task in pair})

    def conflict_inputs(self, step: str, model: str) -> list[str]:
        """One model's files of the tasks in conflicting pairs, on the first sampling (or the task files)."""
        if step == "tasks":
            return [f"data/tasks/{task}.parquet" for task in self.conflict_tasks]
        return [f"data/{step}/{model}/{task}/{self.samples[0]}.parquet" for task in self.conflict_tasks]

    @property
    def analyses(self) -> list[str]:
        names = [*ANALYSES, CONFLICTS] if self.conflict_pairs else list(ANALYSES)
        return [f"data/analysis/{model}/{name}.parquet" for name in names for model in self.models]

    @property
    def study_data(self) -> list[str]:
        """Every data file of the default study (all of them are targets: a file that went missing is
        made again, and what depends on it)."""
        return [
            *(f"data/tasks/{task}.parquet" for task in self.tasks),
            *(f"data/models/{model}" for model in self.models),
            *(path for step in PER_SAMPLE_STEPS for path in self.every_sample(step)),
            *self.analyses,
        ]

    @property
    def report_tables(self) -> list[str]:
        return [*REPORT_TABLES, CONFLICTS] if self.conflict_pairs else list(REPORT_TABLES)

    @property
    def report_figures(self) -> list[str]:
        return [*REPORT_FIGURES, CONFLICTS] if self.conflict_pairs else list(REPORT_FIGURES)

    def report_files(self) -> list[str]:
        """The default study's report, under reports/."""
        return [
            "reports/index.html",
            "reports/metrics.json",
            *(f"reports/tables/{name}.{ext}" for name in self.report_tables for ext in TABLE_FORMATS),
            *(
                f"reports/figures/{name}_{model}.{ext}"
                for ext in FIGURE_FORMATS
                for name in self.report_figures
                for model in self.models
            ),
        ]

    def figure_of(self, path: str) -> tuple[str, str] | None:
        """The (figure, model) a file of reports/figures shows, or None for another file."""
        for name in self.report_figures:
            for model in self.models:
                if any(path == f"reports/figures/{name}_{model}.{ext}" for ext in FIGURE_FORMATS):
                    return name, model
        return None

    def study_inputs(self, name: str, model: str) -> dict[str, list[str] | str]:
        """What the rule of the extended study ``name`` reads for ``model``, from its declaration: every
        task file, the model, and the first sampling's files it names (prompts, activations, results)."""
        declared = studies.get(name)
        inputs: dict[str, list[str] | str] = {"tasks": [f"data/tasks/{task}.parquet" for task in self.tasks]}
        inputs.update({kind: self.first_sample(kind, model) for kind in declared.inputs})
        inputs["model"] = f"data/models/{model}"
        return inputs

    def study_outputs(self, name: str) -> dict[str, str]:
        """The data files the extended study ``name`` writes per model, by name (``{model}`` a wildcard)."""
        return {data: f"data/extended/{{model}}/{data}.parquet" for data in studies.get(name).data}

    @property
    def extended_data(self) -> list[str]:
        return [f"data/extended/{model}/{name}.parquet" for model in self.models for name in EXTENDED_DATA]

    def extended_report_files(self) -> list[str]:
        return [
            "reports/extended/index.html",
            "reports/extended/metrics.json",
            *(f"reports/extended/figures/headline.{ext}" for ext in FIGURE_FORMATS),
            *(f"reports/extended/tables/{name}.{ext}" for name in EXTENDED_TABLES for ext in TABLE_FORMATS),
            *(
                f"reports/extended/figures/{name}_{model}.{ext}"
                for name in EXTENDED_FIGURES
                for model in self.models
                for ext in FIGURE_FORMATS
            ),
        ]


_PATTERNS = (
    re.compile(r"data/(?:prompts|activations|icl|results)/(?P<model>[^/]+)/(?P<task>[^/]+)/sample\d+\.parquet"),
    re.compile(r"data/tasks/(?P<task>[^/]+)\.parquet"),
    re.compile(r"data/models/(?P<model>[^/]+)"),
    re.compile(r"data/(?:analysis|extended)/(?P<model>[^/]+)/[^/]+\.parquet"),
    re.compile(r"reports/.*"),
)


def wildcards_of(path: str) -> dict[str, str]:
    """The model and task a study file belongs to (``{}`` for a report's file), read from its path."""
    for pattern in _PATTERNS:
        match = pattern.fullmatch(path)
        if match:
            return {key: value for key, value in match.groupdict().items()}
    raise ValueError(f"{path} is not a file of the study's layout")
