from snakemake.utils import validate


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


def code(*modules):
    """Library modules that a step runs. Snakemake reruns a job when its command text changes, not
    when library code does, so each step declares its modules as inputs."""
    return [f"src/taskvec/{module}" for module in modules]


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
    *expand("reports/figures/accuracy_by_layer_{model}.png", model=MODELS),
]
