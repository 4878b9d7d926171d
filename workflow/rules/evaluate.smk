rule evaluate_task:
    input:
        task="data/tasks/{task}.parquet",
        model="data/models/{model}",
        code=code("run-task"),
    output:
        prompts=per_sample("prompts"),
        activations=per_sample("activations"),
        results=per_sample("results"),
    log:
        "logs/evaluate_task/{model}/{task}.log",
    benchmark:
        "logs/benchmarks/evaluate_task/{model}/{task}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        seeds=lambda wc: " ".join(str(seed) for seed in split_seeds(wc.task)),
        prompts=lambda wc: PROMPT_ARGS,
        compute=COMPUTE_ARGS,
    shell:
        "taskvec run-task --task-file {input.task} --model-dir {input.model} --model-name {wildcards.model}"
        " --prompts-out {output.prompts}"
        " --activations-out {output.activations} --results-out {output.results} --seeds {params.seeds}"
        " {params.prompts} {params.compute} --threads {threads} --no-progress 2> {log}"
