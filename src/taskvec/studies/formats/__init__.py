"""Prompt formats: the task vector in its own format and in the others', and the transfer between
them (`taskvec formats`); a part of the travel section."""

from taskvec.studies.base import Study

STUDY = Study(
    name="formats",
    title="Prompt formats",
    anchor="formats",
    command="formats",
    inputs=("prompts", "results"),
    data=("formats",),
    tables=("formats", "formats_transfer"),
    figures=("formats_transfer",),
    report="taskvec.studies.formats.report",
    order=30,
    within="travel",
)
