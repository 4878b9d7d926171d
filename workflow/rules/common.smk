import shlex

from snakemake.utils import validate

from taskvec.tasks import TASKS as BUILTIN_TASKS


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


def code(*modules):
    """Library modules that a step runs. Snakemake reruns a job when its command text changes, not
    when library code does, so each step declares its modules as inputs."""
    return [f"src/taskvec/{module}" for module in modules]


def task_code(task):
    """The modules that build one task: a change to another task's builder leaves it alone."""
    modules = ["store.py", "tasks/__init__.py", "tasks/base.py", "tasks/sources.py"]
    if "file" in config["tasks"][task]:
        return code(*modules, "tasks/custom.py") + [config["tasks"][task]["file"]]
    builder_module = BUILTIN_TASKS[task].build.__module__.split(".")[-1]
    return code(*modules, f"tasks/{builder_module}.py")


def build_task_args(task):
    settings = config["tasks"][task]
    args = f"--seed {settings.get('seed', 0)}"
    if "file" in settings:
        min_pairs = config["sizes"]["k"] + 1 + config["sizes"]["dummies"]
        args += f" --file '{settings['file']}' --min-pairs {min_pairs}"
        if settings.get("one_token", False):
            args += " --one-token"
    return args


PROMPT_ARGS = " ".join(
    [
        f"--{flag} {config['sizes'][key]}"
        for flag, key in (("k", "k"), ("n-baseline", "baseline"), ("n-dev", "dev"), ("n-test", "test"),
                          ("n-dummies", "dummies"))
    ]
    + [f"--{name} {shlex.quote(config['prompt'][name])}" for name in ("demonstration", "query", "separator")]
)
COMPUTE_ARGS = (
    f"--device {config['compute']['device']} --dtype {config['compute']['dtype']} "
    f"--batch-size {config['compute']['batch_size']}"
)
RESULTS = expand("data/results/{model}/{task}.parquet", model=MODELS, task=TASKS)
REPORT_FILES = [
    "reports/index.html",
    "reports/metrics.json",
    "reports/tables/accuracy.csv",
    "reports/tables/accuracy_by_layer.csv",
    "reports/tables/paper_comparison.csv",
    *expand("reports/figures/accuracy_by_layer_{model}.png", model=MODELS),
]
