"""Task vectors against function vectors (Todd et al., 2024) on the study's prompts, with the controls
and the distribution gap (`taskvec function-vectors`)."""

from taskvec.studies.base import Option, Study

STUDY = Study(
    name="function_vectors",
    title="Function vectors",
    anchor="function-vectors",
    command="function-vectors",
    help="function vectors (top attention heads) against task vectors, with controls",
    description="For one model and the first sampling of each task: every attention head's mean "
    "output at the last token of clean ICL prompts and its average indirect effect on prompts with "
    "shuffled labels; the function vector (the top heads, averaged over tasks, summed in "
    "residual-stream space) added to bare queries after the block chosen on dev; shuffled-label "
    "ICL with and without it; controls at theta's layer (a random vector of theta's norm, another "
    "task's theta, the task's mean theta); the KL divergence from ICL's next-token distribution "
    "for TV and FV; and the FV of the top n heads for several n. Writes the predictions (--out) "
    "and every head's effect per task (--heads-out).",
    entry="taskvec.studies.function_vectors.step:function_vectors_file",
    inputs=("prompts", "activations", "results"),
    data=("function_vectors", "heads"),
    tables=("function_vectors",),
    figures=("heads_aie", "heads_n"),
    report="taskvec.studies.function_vectors.report",
    order=10,
    options=(
        Option(
            "n_heads",
            "heads in the function vector (default: the paper's 10 of GPT-J's 448, scaled to the model)",
            kind="positive",
            param="function_vectors.n_heads",
            unset=0,
        ),
        Option(
            "head_prompts",
            "dev prompts per task for the heads' mean outputs (clean) and indirect effects (shuffled labels)",
            kind="positive",
            default=10,
            param="function_vectors.head_prompts",
        ),
        Option("seed", "seed of the label shuffles and the random controls", default=0),
    ),
)
