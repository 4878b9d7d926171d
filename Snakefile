# taskvec: in-context learning creates task vectors (Hendel, Geva and Globerson, 2023).
# params.yaml -> data/tasks -> data/models -> extraction (data/prompts, data/activations, data/icl)
# -> evaluation (data/results) -> analyses (data/analysis) -> reports/
# Run from the project's root: `snakemake` (or `snakemake -n`) finds this file and the default
# profile (profiles/default) with no flags.
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
include: "workflow/rules/extended.smk"


rule all:
    default_target: True
    input:
        REPORT_FILES,
        STUDY_DATA,


# `make reproduce-all`: the extended studies beside the default study (rules/extended.smk).
rule extended:
    input:
        EXTENDED_REPORT_FILES,
        EXTENDED_DATA,
