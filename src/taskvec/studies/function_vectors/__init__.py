"""Task vectors against function vectors (Todd et al., 2024) on the study's prompts, with the controls
and the distribution gap (`taskvec function-vectors`)."""

from taskvec.studies.base import Study

STUDY = Study(
    name="function_vectors",
    title="Function vectors",
    anchor="function-vectors",
    command="function-vectors",
    inputs=("prompts", "activations", "results"),
    data=("function_vectors", "heads"),
    tables=("function_vectors",),
    figures=("heads_aie", "heads_n"),
    report="taskvec.studies.function_vectors.report",
    order=10,
)
