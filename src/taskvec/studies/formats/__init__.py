"""Prompt formats: the task vector in its own format and in the others', and the transfer between
them (`taskvec formats`); a part of the travel section."""

from taskvec.studies.base import Option, Study

STUDY = Study(
    name="formats",
    title="Prompt formats",
    anchor="formats",
    command="formats",
    help="ICL and the task vector in several prompt formats, and theta carried from one format to another",
    description="For one model and the first sampling of each task, on the study's test prompts and at the "
    "layer the study chose on dev: each prompt written in each --format (the same demonstrations, query and "
    "dummy queries), its ICL prediction and theta; the bare query of each format unpatched and with every "
    "format's theta patched in (a format x format transfer matrix). A format's query is its demonstration "
    "template up to {y} without the spaces before it; a one-token task keeps, per format, the answers that "
    "are one token where the format writes them. Writes one Parquet file of predictions.",
    entry="taskvec.studies.formats.step:formats_file",
    inputs=("prompts", "results"),
    data=("formats",),
    tables=("formats", "formats_transfer"),
    figures=("formats_transfer",),
    report="taskvec.studies.formats.report",
    order=30,
    within="travel",
    options=(
        Option(
            "formats",
            "a prompt format: its name, demonstration template ending in {y} (e.g. 'Q: {x}<newline>A: {y}', with a "
            "real newline) and the text between demonstrations; repeat for each format (default: the paper's "
            "'example:{x}->{y}', '{x} -> {y}', 'Q: {x}<newline>A: {y}', 'input: {x} output: {y}' and '{x}<tab>{y}')",
            kind="format",
            param="travel.formats",
            spelled="format",
        ),
    ),
)
