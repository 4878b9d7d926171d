rule build_report:
    input:
        results=RESULTS,
        prompts=PROMPTS,
        analyses=ANALYSES,
        code=code("report"),
    output:
        REPORT_FILES,
    log:
        "logs/build_report.log",
    conda:
        "../../environment.yml"
    params:
        steps=" ".join(STUDY_STEPS),
    shell:
        "taskvec report {input.results} --analyses {input.analyses} --prompts {input.prompts}"
        " --benchmarks-dir logs/benchmarks --benchmark-steps {params.steps} --out reports"
        " 2> {log}"
