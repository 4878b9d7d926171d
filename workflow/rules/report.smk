rule build_report:
    input:
        results=RESULTS,
        code=code("store.py", "evaluate.py", "report/__init__.py", "report/collect.py", "report/tables.py",
            "report/figures.py", "report/html.py", "report/paper.py", "report/paper_results.csv"),
    output:
        REPORT_FILES,
    conda:
        "../../environment.yml"
    log:
        "logs/build_report.log",
    shell:
        "taskvec report {input.results} --out reports 2> {log}"
