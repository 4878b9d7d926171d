# The extended studies (`make reproduce-all`, target `extended`): task vectors against function
# vectors, and how far the task vector travels (demonstrations and demonstration sets; prompt formats).
# They read the default study's first sampling and write beside it, under data/extended/ and
# reports/extended/, so the default study's files and report stay as they are.


# One rule per registered study (taskvec.studies), each built from its declaration: its inputs, its
# outputs, its command and the settings params.yaml gives it.
for _study in STUDIES:

    rule:
        name:
            _study.rule
        input:
            unpack(study_inputs(_study.name)),
            code=code(_study.command),
        output:
            **LAYOUT.study_outputs(_study.name),
        log:
            f"logs/{_study.rule}/{{model}}.log",
        benchmark:
            f"logs/benchmarks/{_study.rule}/{{model}}.tsv"
        conda:
            "../../environment.yml"
        threads: 1
        params:
            # functions: a prompt format's template holds braces the shell line must not expand
            command=lambda wildcards, input, output, _name=_study.name: study_command(_name, input, output),
            compute=COMPUTE_ARGS,
        shell:
            "{params.command} {params.compute} --threads {threads} 2> {log}"


rule build_extended_report:
    input:
        results=RESULTS,
        analyses=EXTENDED_DATA,
        code=code("extended-report"),
    output:
        EXTENDED_REPORT_FILES,
    log:
        "logs/build_extended_report.log",
    conda:
        "../../environment.yml"
    shell:
        "taskvec extended-report {input.results} --analyses {input.analyses} --out reports/extended" " 2> {log}"
