rule build_report:
    input:
        results=RESULTS,
        prompts=PROMPTS,
        analyses=ANALYSES,
        code=code("report"),
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
