"""The report's comparison with the paper's published accuracies (:mod:`taskvec.report.paper`)."""

from __future__ import annotations

from taskvec.report.collect import HOLDS, ICL_WORKS, METHODS, StudyResults
from taskvec.report.page import escape, number_text, table_row
from taskvec.report.paper import CITATION, paper_mean, paper_models, paper_size_range


def paper_section(study: StudyResults) -> str:
    head = "".join(f"<th colspan='3'>{escape(m)}</th>" for m in study.models)
    sub = "<th>base</th><th>ICL</th><th>TV</th>" * (len(study.models) + 1)
    body = ""
    for task in study.tasks:
        paper_task = study.paper_task(task)
        mean = paper_mean(paper_task) if paper_task else None
        cells = [(escape(task), "l")]
        cells += [(number_text(mean[k]), "") for k in METHODS] if mean else [("n/a", "")] * 3
        for model in study.models:
            r = study.get(model, task)
            cells += [(number_text(getattr(r.scores, k)), "") for k in METHODS] if r else [("", "")] * 3
        cells.append((escape(study.differs(task)), "src"))
        body += table_row(cells)
    return f"""
<h2 id="paper">Comparison with the paper</h2>
<p class="note">Paper: the unweighted mean over its {len(paper_models())} models ({escape(", ".join(paper_models()))}:
{paper_size_range()} parameters, full-precision base models), every task, no filter; source: {escape(CITATION)}. Tasks
marked n/a replace a paper task that has no installable data source (see Provenance).</p>
<table><thead><tr><th class="l" rowspan="2">task</th><th colspan="3">paper (mean)</th>{head}
<th class="l" rowspan="2">differs from the paper</th></tr>
<tr>{sub}</tr></thead><tbody>{body}</tbody></table>
<p>{escape(_comparison_text(study))}</p>
"""


def _paper_share(study: StudyResults, tasks: list[str]) -> tuple[float, float, int] | None:
    """The paper's task vector over its ICL accuracy on ``tasks`` (means over its models), and how many
    of them the paper has."""
    paper = [paper_mean(study.paper_task(t)) for t in tasks if study.paper_task(t)]
    if not paper:
        return None
    icl = sum(p["icl"] for p in paper) / len(paper)
    tv = sum(p["tv"] for p in paper) / len(paper)
    return tv / icl if icl else float("nan"), tv, len(paper)


def _comparison_text(study: StudyResults) -> str:
    """Where the pattern the paper reports (the task vector keeps most of ICL's accuracy) holds here, and
    the paper's own share on the same tasks: the paper reports means over its models with no filter, so
    the study's filter and its 75% criterion are the study's, and the like-for-like number is the paper's
    share on the tasks the study keeps."""
    sentences = []
    for model in study.models:
        rows = study.for_model(model)
        works = [r for r in rows if r.icl_works]
        holds = [r.task for r in works if r.scores.tv >= HOLDS * r.scores.icl]
        falls = [r.task for r in works if r.scores.tv < HOLDS * r.scores.icl]
        no_icl = [r.task for r in rows if not r.icl_works]
        text = (
            f"{model}: ICL beats the baseline by at least {ICL_WORKS} on {len(works)} of {len(rows)} tasks; on "
            f"{len(holds)} of them the task vector keeps at least {HOLDS:.0%} of ICL accuracy (this study's "
            "criterion: the paper reports means, not this count)"
        )
        text += f"; it falls short on {', '.join(falls)}" if falls else ""
        text += "."
        matched = [r for r in works if study.paper_task(r.task)]
        paper = _paper_share(study, [r.task for r in matched])
        if paper:
            share, _, n = paper
            mine = sum(r.scores.tv for r in matched) / sum(r.scores.icl for r in matched)
            text += (
                f" On the {n} of these tasks that the paper has, the task vector keeps {mine:.0%} of ICL accuracy "
                f"here and {share:.0%} in the paper (its mean over its models)."
            )
        if no_icl:
            text += (
                f" On {', '.join(no_icl)} ICL does not beat the baseline by {ICL_WORKS} at this model size, so "
                "the task vector's share of ICL accuracy says little there."
            )
        sentences.append(text)
    every = _paper_share(study, list(study.tasks))
    if every:
        share, tv, n = every
        sentences.append(
            f"Over all {n} of the paper's tasks here, unfiltered, the paper's task vector keeps {share:.0%} of ICL "
            f"accuracy on average over its models (task vector {tv:.2f})."
        )
    return " ".join(sentences)
