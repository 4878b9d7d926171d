# taskvec: in-context learning creates task vectors (Hendel, Geva and Globerson, 2023).
# params.yaml -> data/tasks -> data/models -> data/prompts -> data/activations -> data/results -> reports/
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    model="|".join(MODELS),
    task="|".join(TASKS),


include: "workflow/rules/datasets.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        REPORT_FILES,
        STUDY_DATA,
    default_target: True
