# The chain's two model steps per (model, task), one job for all the task's split seeds each:
# extraction runs the demonstrations (prompts, theta at every layer, the ICL prompt's prediction and
# generation); evaluation reads those files and runs the bare queries (baseline, layer sweep, test,
# strict generations). Each job's code inputs are what its command runs, so a change to scoring or
# patching code reruns evaluation and no extraction.


rule extract_activations:
    input:
        task="data/tasks/{task}.parquet",
        model="data/models/{model}",
        code=code("extract-task"),
    output:
        prompts=per_sample("prompts"),
        activations=per_sample("activations"),
        icl=per_sample("icl"),
    log:
        "logs/extract_activations/{model}/{task}.log",
    benchmark:
        "logs/benchmarks/extract_activations/{model}/{task}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        seeds=lambda wc: " ".join(str(seed) for seed in split_seeds(wc.task)),
        prompts=lambda wc: PROMPT_ARGS,
        compute=COMPUTE_ARGS,
    shell:
        "taskvec extract-task --task-file {input.task} --model-dir {input.model} --model-name {wildcards.model}"
        " --prompts-out {output.prompts} --activations-out {output.activations} --icl-out {output.icl}"
        " --seeds {params.seeds} {params.prompts} {params.compute} --threads {threads} --no-progress 2> {log}"


rule evaluate_task:
    input:
        prompts=per_sample("prompts"),
        activations=per_sample("activations"),
        icl=per_sample("icl"),
        model="data/models/{model}",
        code=code("evaluate"),
    output:
        results=per_sample("results"),
    log:
        "logs/evaluate_task/{model}/{task}.log",
    benchmark:
        "logs/benchmarks/evaluate_task/{model}/{task}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    params:
        compute=COMPUTE_ARGS,
    shell:
        "taskvec evaluate --model-dir {input.model} --prompts {input.prompts} --activations {input.activations}"
        " --icl {input.icl} --out {output.results} {params.compute} --threads {threads} --no-progress 2> {log}"
