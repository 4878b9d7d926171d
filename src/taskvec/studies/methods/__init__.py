"""Every registered vector method (taskvec.methods) compared under one protocol
(`taskvec compare-methods`)."""

from taskvec.defaults import POOL
from taskvec.studies.base import Option, Study


def method_options() -> tuple[Option, ...]:
    """Every registered method's own settings (taskvec.methods.settings: one namespace, params.yaml's
    ``methods`` block), read when the parser is built."""
    from taskvec import methods

    kinds = {int: "positive", float: "float", str: "text"}
    return tuple(
        Option(field, f"{method.label}: {text}", kinds[kind], default, param=f"methods.{field}")
        for field, (method, kind, default, text) in methods.settings().items()
    )


STUDY = Study(
    name="methods",
    title="Methods compared",
    anchor="methods",
    command="compare-methods",
    help="every registered vector method against ICL and the per-prompt task vector, one protocol",
    description="For one model and the first sampling of each task, on the study's test prompts and scoring: "
    "ICL and the per-prompt task vector (from the study's results), the bare query, and each task-level "
    "method (`taskvec vector --help` lists them) made from one fixed pool of --pool demonstration sets drawn "
    "from the task's pairs that are no dev or test query; each method's block and strength chosen on the bare "
    "dev queries, then judged on the bare test queries (first token and strict metric), with three controls at "
    "the same configuration (a random vector of the same norm, another task's vector, the vectors of the pool "
    "with its labels deranged or drawn at random from the task's answers; ICL under the same label controls) "
    "and the measured seconds of each method's one-off work and per query. Writes one "
    "Parquet file of predictions, with the pools, choices and costs in its metadata.",
    entry="taskvec.studies.methods.step:compare_methods_file",
    inputs=("prompts", "results"),
    data=("methods",),
    tables=("methods",),
    figures=("methods_cost", "methods_tasks", "methods_heads"),
    report="taskvec.studies.methods.report",
    order=40,
    summary_order=0,  # the matched comparison first
    options=(
        Option("pool", "demonstration sets in each task's pool", "positive", POOL, param="methods.pool"),
        Option("seed", "seed of the pools, the label shuffles and the random controls", default=0),
    ),
    more_options=method_options,
)
