"""The report's comparison with the paper's published accuracies (:mod:`taskvec.report.paper`)."""

from __future__ import annotations

from taskvec.report.collect import HOLDS, ICL_WORKS, METHODS, StudyResults
from taskvec.report.page import escape, number_text, table_row
from taskvec.report.paper import CITATION, paper_mean, paper_models


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
<p class="note">Paper: mean over its {len(paper_models())} models ({escape(", ".join(paper_models()))}); source:
{escape(CITATION)}. Tasks marked n/a replace a paper task that has no installable data source (see Provenance).</p>
<table><thead><tr><th class="l" rowspan="2">task</th><th colspan="3">paper (mean)</th>{head}
<th class="l" rowspan="2">differs from the paper</th></tr>
<tr>{sub}</tr></thead><tbody>{body}</tbody></table>
<p>{escape(_comparison_text(study))}</p>
"""


def _comparison_text(study: StudyResults) -> str:
    """Where the paper's pattern (ICL works; the task vector keeps most of it) holds here, and where not."""
    sentences = []
    for model in study.models:
        rows = study.for_model(model)
        works = [r for r in rows if r.icl_works]
        holds = [r.task for r in works if r.scores.tv >= HOLDS * r.scores.icl]
        falls = [r.task for r in works if r.scores.tv < HOLDS * r.scores.icl]
        no_icl = [r.task for r in rows if not r.icl_works]
        text = (
            f"{model}: ICL beats the baseline by at least {ICL_WORKS} on {len(works)} of {len(rows)} tasks; on "
            f"{len(holds)} of them the task vector keeps at least {HOLDS:.0%} of ICL accuracy, as in the paper"
        )
        text += f" (it falls short on {', '.join(falls)})" if falls else ""
        text += "."
        if no_icl:
            text += (
                f" On {', '.join(no_icl)} ICL does not beat the baseline by {ICL_WORKS} at this model size, so "
                "the task vector's share of ICL accuracy says little there."
            )
        sentences.append(text)
    paper = [paper_mean(study.paper_task(t)) for t in study.tasks if study.paper_task(t)]
    if paper:
        icl = sum(p["icl"] for p in paper) / len(paper)
        tv = sum(p["tv"] for p in paper) / len(paper)
        sentences.append(
            f"In the paper, on these tasks, the task vector keeps {tv / icl:.0%} of ICL accuracy "
            f"on average over its models (task vector {tv:.2f}, ICL {icl:.2f})."
        )
    return " ".join(sentences)
