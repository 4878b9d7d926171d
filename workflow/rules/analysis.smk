rule conflicting_tasks:
    input:
        tasks=lambda wc: conflict_inputs("tasks", wc.model),
        prompts=lambda wc: conflict_inputs("prompts", wc.model),
        activations=lambda wc: conflict_inputs("activations", wc.model),
        results=lambda wc: conflict_inputs("results", wc.model),
        model="data/models/{model}",
        code=code("conflicting-tasks"),
    output:
        "data/analysis/{model}/conflicting_tasks.parquet",
    log:
        "logs/conflicting_tasks/{model}.log",
    benchmark:
        "logs/benchmarks/conflicting_tasks/{model}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        pairs=lambda wc: " ".join(f"{a}:{b}" for a, b in CONFLICT_PAIRS),
        compute=COMPUTE_ARGS,
    shell:
        "taskvec conflicting-tasks --model-dir {input.model} --tasks {input.tasks} --prompts {input.prompts}"
        " --activations {input.activations} --results {input.results} --pairs {params.pairs} --out {output}"
        " {params.compute} --threads {threads} 2> {log}"


rule robustness:
    input:
        activations=lambda wc: first_sample("activations", wc.model),
        results=lambda wc: first_sample("results", wc.model),
        code=code("robustness"),
    output:
        "data/analysis/{model}/robustness.parquet",
    log:
        "logs/robustness/{model}.log",
    benchmark:
        "logs/benchmarks/robustness/{model}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    shell:
        "taskvec robustness --activations {input.activations} --results {input.results} --out {output} 2> {log}"


rule vocabulary_projection:
    input:
        activations=lambda wc: first_sample("activations", wc.model),
        results=lambda wc: first_sample("results", wc.model),
        prompts=lambda wc: first_sample("prompts", wc.model),
        model="data/models/{model}",
        code=code("vocabulary"),
    output:
        "data/analysis/{model}/vocabulary.parquet",
    log:
        "logs/vocabulary_projection/{model}.log",
    benchmark:
        "logs/benchmarks/vocabulary_projection/{model}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        compute=COMPUTE_ARGS,
    shell:
        "taskvec vocabulary --model-dir {input.model} --activations {input.activations} --results {input.results}"
        " --prompts {input.prompts} --out {output} {params.compute} --threads {threads} 2> {log}"
