import shlex
from pathlib import Path

from snakemake.utils import validate

from taskvec.analysis.pairs import pairs_in
from taskvec.codedeps import command_files
from taskvec.config import check_pairs_available, check_unique_keys
from taskvec.study import STUDY_STEPS
from taskvec.tasks import TASKS as BUILTIN_TASKS

for _configfile in workflow.configfiles:
    check_unique_keys(_configfile)
validate(config, schema="../schemas/params.schema.yaml")

MODELS = list(config["models"])
TASKS = list(config["tasks"])
PACKAGED_MODELS = ("smollm2-135m", "gemma3-270m")

for _name, _model in config["models"].items():
    _source = _model["source"]
    if _source.startswith("packaged:") and _source.removeprefix("packaged:") not in PACKAGED_MODELS:
        raise ValueError(
            f"params.yaml: models.{_name}.source is {_source!r}; packaged models are "
            + ", ".join(f"packaged:{m}" for m in PACKAGED_MODELS)
            + " (or give a Hugging Face model id or a local model directory)"
        )

for _name, _task in config["tasks"].items():
    if "file" not in _task and _name not in BUILTIN_TASKS:
        raise ValueError(
            f"params.yaml: tasks.{_name} is not a built-in task and names no file; built-in tasks are "
            + ", ".join(BUILTIN_TASKS)
            + ". For a task of your own, give its file: tasks.{_name}.file: path/to/pairs.jsonl"
        )
    if "file" in _task and _name in BUILTIN_TASKS:
        raise ValueError(f"params.yaml: tasks.{_name}: {_name} is a built-in task; give your file another name")

check_pairs_available(config["tasks"], config["sizes"])


ROOT = Path(workflow.basedir)  # the project: the Snakefile lives in its root
SOURCE = ROOT / "src" / "taskvec"


def code(subcommand):
    """The library files that `taskvec <subcommand>` runs, computed from its imports in this
    project's src/taskvec (taskvec.codedeps): Snakemake reruns a job when its command text or inputs
    change, not when the code it runs does, so each step's code is an input."""
    return [str(path.relative_to(ROOT)) for path in command_files(subcommand, SOURCE)]


def task_code(task):
    """What one task's build reads beside its code: the user's file, for a task of its own."""
    extra = [config["tasks"][task]["file"]] if "file" in config["tasks"][task] else []
    return code("build-task") + extra


def build_task_args(task):
    """build-task's arguments: the seed, a user task's file, and the rendering and scoring rules that
    params.yaml sets (unset ones keep the task's own: the paper's for a built-in task)."""
    settings = config["tasks"][task]
    args = f"--seed {settings.get('seed', 0)}"
    if "file" in settings:
        min_pairs = config["sizes"]["k"] + 1 + config["sizes"]["dummies"]
        args += f" --file '{settings['file']}' --min-pairs {min_pairs}"
    if "one_token" in settings:
        args += " --one-token" if settings["one_token"] else " --no-one-token"
    if "leading_space" in settings:
        value = settings["leading_space"]  # YAML reads a bare on/off as true/false
        args += " --leading-space " + ("on" if value is True else "off" if value is False else value)
    if "scoring" in settings:
        args += f" --scoring {settings['scoring']}"
    return args


PROMPT_ARGS = " ".join(
    [
        f"--{flag} {config['sizes'][key]}"
        for flag, key in (
            ("k", "k"),
            ("n-baseline", "baseline"),
            ("n-dev", "dev"),
            ("n-test", "test"),
            ("n-dummies", "dummies"),
        )
    ]
    + [f"--{name} {shlex.quote(config['prompt'][name])}" for name in ("demonstration", "query", "separator")]
    + [f"--max-answer-tokens {config['prompt']['max_answer_tokens']}"]
)
COMPUTE_ARGS = (
    f"--device {config['compute']['device']} --dtype {config['compute']['dtype']} "
    f"--batch-size {config['compute']['batch_size']}"
)
SAMPLES = [f"sample{i}" for i in range(config["sizes"]["seeds"])]


def split_seeds(task):
    """The split seeds of a task: its seed, then the next ones, one per sample."""
    first = config["tasks"][task].get("seed", 0)
    return [first + i for i in range(len(SAMPLES))]


def per_sample(step, model="{model}", task="{task}"):
    return [f"data/{step}/{model}/{task}/{sample}.parquet" for sample in SAMPLES]


def first_sample(step, model):
    """The analyses of theta run on the first sampling of the splits."""
    return [f"data/{step}/{model}/{task}/{SAMPLES[0]}.parquet" for task in TASKS]


CONFLICT_PAIRS = pairs_in(TASKS)


CONFLICT_TASKS = sorted({task for pair in CONFLICT_PAIRS for task in pair})


def conflict_inputs(step, model):
    """One model's files of the tasks in conflicting pairs, on the first sampling (or the task files)."""
    if step == "tasks":
        return [f"data/tasks/{task}.parquet" for task in CONFLICT_TASKS]
    return [f"data/{step}/{model}/{task}/{SAMPLES[0]}.parquet" for task in CONFLICT_TASKS]


RESULTS = [path for model in MODELS for task in TASKS for path in per_sample("results", model, task)]
PROMPTS = [path for model in MODELS for task in TASKS for path in per_sample("prompts", model, task)]
ANALYSES = [
    *expand("data/analysis/{model}/robustness.parquet", model=MODELS),
    *expand("data/analysis/{model}/vocabulary.parquet", model=MODELS),
    *(expand("data/analysis/{model}/conflicting_tasks.parquet", model=MODELS) if CONFLICT_PAIRS else []),
]
TRAVEL_ARGS = (
    f"--ks {' '.join(map(str, config['travel']['ks']))}"
    f" --contexts {' '.join(map(str, config['travel']['contexts']))}"
)
# `taskvec formats --format NAME DEMONSTRATION SEPARATOR` for each prompt format of travel.formats
FORMAT_ARGS = " ".join(
    f"--format {shlex.quote(name)} {shlex.quote(spec['demonstration'])} {shlex.quote(spec.get('separator', chr(10)))}"
    for name, spec in config["travel"]["formats"].items()
)
EXTENDED_REPORT_FILES = [
    "reports/extended/index.html",
    "reports/extended/metrics.json",
    *[
        f"reports/extended/tables/{name}.{ext}"
        for name in ("function_vectors", "travel", "formats", "formats_transfer")
        for ext in ("csv", "md")
    ],
    *[
        f"reports/extended/figures/{name}_{model}.{ext}"
        for name in ("heads_aie", "heads_n", "travel_k", "travel_contexts", "formats_transfer")
        for model in MODELS
        for ext in ("png", "svg")
    ],
]
FUNCTION_VECTOR_ARGS = f"--head-prompts {config['function_vectors']['head_prompts']}" + (
    f" --n-heads {config['function_vectors']['n_heads']}" if config["function_vectors"]["n_heads"] else ""
)


def report_file(path, caption, category, **kwargs):
    """An output shown by `snakemake --report`, with its caption from workflow/report/."""
    return report(path, caption=str(ROOT / "workflow" / "report" / f"{caption}.rst"), category=category, **kwargs)


def report_figure(name, model, caption, category):
    return report_file(
        f"reports/figures/{name}_{model}.png",
        caption,
        category,
        subcategory=model,
        labels={"model": model, "figure": name.replace("_", " ")},
    )


FIGURE_NAMES = ["accuracy_summary", "accuracy_by_layer", "tsne", "distances"] + (
    ["conflicting_tasks"] if CONFLICT_PAIRS else []
)
FIGURE_CATEGORIES = {
    "accuracy_summary": "1. Accuracy",
    "accuracy_by_layer": "2. Accuracy by layer",
    "conflicting_tasks": "3. Conflicting tasks",
    "tsne": "4. Robustness",
    "distances": "4. Robustness",
}
REPORT_TABLES = ["accuracy", "accuracy_by_layer", "paper_comparison", "robustness", "vocabulary"] + (
    ["conflicting_tasks"] if CONFLICT_PAIRS else []
)
# Every artifact of the study is a target of `all`, not only the report: a file that went missing
# (deleted, or removed when a killed run had started its job) is made again, and what depends on it.
STUDY_DATA = [
    *expand("data/tasks/{task}.parquet", task=TASKS),
    *expand("data/models/{model}", model=MODELS),
    *[
        path
        for step in ("prompts", "activations", "icl", "results")
        for model in MODELS
        for task in TASKS
        for path in per_sample(step, model, task)
    ],
    *ANALYSES,
]
REPORT_FILES = [
    report_file("reports/index.html", caption="index", category="0. Study report"),
    "reports/metrics.json",
    *[f"reports/tables/{name}.{ext}" for name in REPORT_TABLES for ext in ("csv", "md")],
    *[report_figure(name, m, name, FIGURE_CATEGORIES[name]) for name in FIGURE_NAMES for m in MODELS],
    *[f"reports/figures/{name}_{m}.svg" for name in FIGURE_NAMES for m in MODELS],
]
