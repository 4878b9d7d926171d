# The extended studies (`make reproduce-all`, target `extended`): task vectors against function
# vectors, and how far the task vector travels (demonstrations and demonstration sets; prompt formats).
# They read the default study's first sampling and write beside it, under data/extended/ and
# reports/extended/, so the default study's files and report stay as they are.


rule function_vectors:
    input:
        tasks=expand("data/tasks/{task}.parquet", task=TASKS),
        prompts=lambda wc: first_sample("prompts", wc.model),
        activations=lambda wc: first_sample("activations", wc.model),
        results=lambda wc: first_sample("results", wc.model),
        model="data/models/{model}",
        code=code("function-vectors"),
    output:
        predictions="data/extended/{model}/function_vectors.parquet",
        heads="data/extended/{model}/heads.parquet",
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
        " --activations {input.activations} --results {input.results} --out {output.predictions}"
        " --heads-out {output.heads} {params.settings} {params.compute} --threads {threads} 2> {log}"


rule travel:
    input:
        tasks=expand("data/tasks/{task}.parquet", task=TASKS),
        prompts=lambda wc: first_sample("prompts", wc.model),
        results=lambda wc: first_sample("results", wc.model),
        model="data/models/{model}",
        code=code("travel"),
    output:
        "data/extended/{model}/travel.parquet",
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
        " --results {input.results} --out {output}"
        " {params.settings} {params.compute} --threads {threads} 2> {log}"


rule formats:
    input:
        tasks=expand("data/tasks/{task}.parquet", task=TASKS),
        prompts=lambda wc: first_sample("prompts", wc.model),
        results=lambda wc: first_sample("results", wc.model),
        model="data/models/{model}",
        code=code("formats"),
    output:
        "data/extended/{model}/formats.parquet",
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
        " --results {input.results} --out {output}"
        " {params.formats} {params.compute} --threads {threads} 2> {log}"


rule compare_methods:
    input:
        tasks=expand("data/tasks/{task}.parquet", task=TASKS),
        prompts=lambda wc: first_sample("prompts", wc.model),
        results=lambda wc: first_sample("results", wc.model),
        model="data/models/{model}",
        code=code("compare-methods"),
    output:
        "data/extended/{model}/methods.parquet",
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
        " --results {input.results} --out {output}"
        " {params.settings} {params.compute} --threads {threads} 2> {log}"


rule build_extended_report:
    input:
        results=RESULTS,
        travel=expand("data/extended/{model}/{name}.parquet", model=MODELS, name=["travel", "formats", "methods"]),
        vectors=expand("data/extended/{model}/{name}.parquet", model=MODELS, name=["function_vectors", "heads"]),
        code=code("extended-report"),
    output:
        EXTENDED_REPORT_FILES,
    log:
        "logs/build_extended_report.log",
    conda:
        "../../environment.yml"
    shell:
        "taskvec extended-report {input.results} --analyses {input.travel} {input.vectors} --out reports/extended"
        " 2> {log}"
