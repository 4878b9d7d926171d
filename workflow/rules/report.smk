rule build_report:
    input:
        results=RESULTS,
        prompts=PROMPTS,
        analyses=ANALYSES,
        code=code("store.py", "evaluate.py", "scoring.py", "prompts.py", "tasks/base.py", "analysis/stats.py",
            "analysis/pairs.py", "report/__init__.py", "report/collect.py", "report/tables.py", "report/figures.py",
            "report/html.py", "report/paper.py", "report/paper_results.csv"),
    output:
        REPORT_FILES,
    conda:
        "../../environment.yml"
    log:
        "logs/build_report.log",
    shell:
        "taskvec report {input.results} --analyses {input.analyses} --prompts {input.prompts}"
        " --benchmarks-dir logs/benchmarks --out reports"
        " 2> {log}"
