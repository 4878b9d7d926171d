"""Every registered vector method (taskvec.methods) compared under one protocol
(`taskvec compare-methods`)."""

from taskvec.studies.base import Study

STUDY = Study(
    name="methods",
    title="Methods compared",
    anchor="methods",
    command="compare-methods",
    inputs=("prompts", "results"),
    data=("methods",),
    tables=("methods",),
    figures=("methods_cost", "methods_tasks", "methods_heads"),
    report="taskvec.studies.methods.report",
    order=40,
)
