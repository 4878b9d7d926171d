"""How far the task vector travels: the number of demonstrations and of demonstration sets theta is
averaged over (`taskvec travel`)."""

from taskvec.studies.base import Option, Study

STUDY = Study(
    name="travel",
    title="Travel",
    anchor="travel",
    command="travel",
    help="ICL and task-vector accuracy against the number of demonstrations and of demonstration sets",
    description="For one model and the first sampling of each task, on the study's test prompts and at the "
    "layer the study chose on dev: (1) with the first k of a nested list of demonstrations (the study's own, "
    "then more drawn from the task's other usable pairs), the ICL prediction and theta of that prompt patched "
    "into the bare query, for each k in --ks; (2) theta averaged over M independent demonstration sets of the "
    "study's size (the first is the study's own), patched into the bare query, for each M in --contexts. "
    "Writes one Parquet file of predictions.",
    entry="taskvec.studies.travel.step:travel_file",
    inputs=("prompts", "results"),
    data=("travel",),
    tables=("travel",),
    figures=("travel_k", "travel_contexts"),
    report="taskvec.studies.travel.report",
    order=20,
    heading="How far the task vector travels",
    options=(
        Option("ks", "demonstrations per prompt", "positive", (1, 2, 3, 5, 10), many=True, param="travel.ks"),
        Option(
            "contexts",
            "demonstration sets theta is averaged over",
            "positive",
            (1, 2, 4, 8),
            many=True,
            param="travel.contexts",
        ),
        Option("seed", "seed of the extra demonstrations and sets", default=0),
    ),
)
