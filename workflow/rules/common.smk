from pathlib import Path

from snakemake.utils import validate

from taskvec.codedeps import command_files
from taskvec.config import check_unique_keys
from taskvec.workflow import contract
from taskvec.workflow.contract import STUDY_STEPS, StudyLayout

for _configfile in workflow.configfiles:
    check_unique_keys(_configfile)
validate(config, schema="../schemas/params.schema.yaml")
contract.check_params(config)

LAYOUT = StudyLayout.of(config)
MODELS = list(LAYOUT.models)
TASKS = list(LAYOUT.tasks)


ROOT = Path(workflow.basedir)  # the project: the Snakefile lives in its root
SOURCE = ROOT / "src" / "taskvec"


def code(subcommand):
    """The library files that `taskvec <subcommand>` runs, computed from its imports in this
    project's src/taskvec (taskvec.codedeps): Snakemake reruns a job when its command text or inputs
    change, not when the code it runs does, so each step's code is an input."""
    return [str(path.relative_to(ROOT)) for path in command_files(subcommand, SOURCE)]


def study_inputs(name):
    """What an extended study's rule reads, from the study's declaration (taskvec.studies)."""
    return lambda wildcards: LAYOUT.study_inputs(name, wildcards.model)


def study_command(name, input, output):
    """The extended study ``name``'s command line, from its declaration: its inputs, its outputs and
    the settings params.yaml gives it (taskvec.workflow.contract.study_command)."""
    return contract.study_command(config, name, input, output)


def task_code(task):
    """What one task's build reads beside its code: the user's file, for a task of its own."""
    extra = [config["tasks"][task]["file"]] if "file" in config["tasks"][task] else []
    return code("build-task") + extra


def build_task_args(task):
    return contract.shell(contract.build_task_args(config["tasks"][task], config["sizes"]))


PROMPT_ARGS = contract.shell(contract.prompt_args(config))
COMPUTE_ARGS = contract.shell(contract.compute_args(config))
STUDIES = list(contract.studies.registry().values())
split_seeds = LAYOUT.split_seeds
per_sample = LAYOUT.per_sample
first_sample = LAYOUT.first_sample
conflict_inputs = LAYOUT.conflict_inputs
CONFLICT_PAIRS = LAYOUT.conflict_pairs
RESULTS = LAYOUT.every_sample("results")
PROMPTS = LAYOUT.every_sample("prompts")
ANALYSES = LAYOUT.analyses
STUDY_DATA = LAYOUT.study_data
EXTENDED_DATA = LAYOUT.extended_data


def report_file(path, caption, category, **kwargs):
    """An output shown by `snakemake --report`, with its caption from workflow/report/."""
    return report(path, caption=str(ROOT / "workflow" / "report" / f"{caption}.rst"), category=category, **kwargs)


def shown(path):
    """A report output as `snakemake --report` shows it: the page, and each PNG figure with its caption."""
    if path == "reports/index.html":
        return report_file(path, caption="index", category="0. Study report")
    figure = LAYOUT.figure_of(path)
    if figure is None or not path.endswith(".png"):
        return path
    name, model = figure
    return report_file(
        path,
        name,
        contract.FIGURE_CATEGORIES[name],
        subcategory=model,
        labels={"model": model, "figure": name.replace("_", " ")},
    )


REPORT_FILES = [shown(path) for path in LAYOUT.report_files()]
EXTENDED_REPORT_FILES = LAYOUT.extended_report_files()
