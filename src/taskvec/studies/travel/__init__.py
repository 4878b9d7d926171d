"""How far the task vector travels: the number of demonstrations and of demonstration sets theta is
averaged over (`taskvec travel`)."""

from taskvec.studies.base import Study

STUDY = Study(
    name="travel",
    title="Travel",
    anchor="travel",
    command="travel",
    inputs=("prompts", "results"),
    data=("travel",),
    tables=("travel",),
    figures=("travel_k", "travel_contexts"),
    report="taskvec.studies.travel.report",
    order=20,
    heading="How far the task vector travels",
)
