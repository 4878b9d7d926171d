# The extended studies (`make reproduce-all`, target `extended`): task vectors against function
# vectors, and how far the task vector travels (demonstrations and demonstration sets; prompt formats).
# They read the default study's first sampling and write beside it, under data/extended/ and
# reports/extended/, so the default study's files and report stay as they are.


rule function_vectors:
    input:
        unpack(study_inputs("function_vectors")),
        code=code("function-vectors"),
    output:
        **LAYOUT.study_outputs("function_vectors"),
    log:
        "logs/function_vectors/{model}.log",
    benchmark:
        "logs/benchmarks/function_vectors/{model}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        settings=FUNCTION_VECTOR_ARGS,
        compute=COMPUTE_ARGS,
    shell:
        "taskvec function-vectors --model-dir {input.model} --tasks {input.tasks} --prompts {input.prompts}"
        " --activations {input.activations} --results {input.results} --out {output.function_vectors}"
        " --heads-out {output.heads} {params.settings} {params.compute} --threads {threads} 2> {log}"


rule travel:
    input:
        unpack(study_inputs("travel")),
        code=code("travel"),
    output:
        **LAYOUT.study_outputs("travel"),
    log:
        "logs/travel/{model}.log",
    benchmark:
        "logs/benchmarks/travel/{model}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        settings=TRAVEL_ARGS,
        compute=COMPUTE_ARGS,
    shell:
        "taskvec travel --model-dir {input.model} --tasks {input.tasks} --prompts {input.prompts}"
        " --results {input.results} --out {output.travel}"
        " {params.settings} {params.compute} --threads {threads} 2> {log}"


rule formats:
    input:
        unpack(study_inputs("formats")),
        code=code("formats"),
    output:
        **LAYOUT.study_outputs("formats"),
    log:
        "logs/formats/{model}.log",
    benchmark:
        "logs/benchmarks/formats/{model}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        formats=lambda wildcards: FORMAT_ARGS,  # a function: the templates hold braces
        compute=COMPUTE_ARGS,
    shell:
        "taskvec formats --model-dir {input.model} --tasks {input.tasks} --prompts {input.prompts}"
        " --results {input.results} --out {output.formats}"
        " {params.formats} {params.compute} --threads {threads} 2> {log}"


rule compare_methods:
    input:
        unpack(study_inputs("methods")),
        code=code("compare-methods"),
    output:
        **LAYOUT.study_outputs("methods"),
    log:
        "logs/compare_methods/{model}.log",
    benchmark:
        "logs/benchmarks/compare_methods/{model}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        settings=METHODS_ARGS,
        compute=COMPUTE_ARGS,
    shell:
        "taskvec compare-methods --model-dir {input.model} --tasks {input.tasks} --prompts {input.prompts}"
        " --results {input.results} --out {output.methods}"
        " {params.settings} {params.compute} --threads {threads} 2> {log}"


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
