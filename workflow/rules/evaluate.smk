rule sweep_layers:
    input:
        prompts="data/prompts/{model}/{task}.parquet",
        activations="data/activations/{model}/{task}.parquet",
        model="data/models/{model}",
        code=code(
            "store.py", "models.py", "architectures.py", "hooks.py", "forward.py", "prompts.py", "extract.py", "evaluate.py"
        ),
    output:
        "data/results/{model}/{task}.parquet",
    params:
        compute=COMPUTE_ARGS,
    threads: 1
    conda:
        "../../environment.yml"
    log:
        "logs/sweep_layers/{model}/{task}.log",
    benchmark:
        "logs/benchmarks/sweep_layers/{model}/{task}.tsv"
    shell:
        "taskvec evaluate --model-dir {input.model} --prompts {input.prompts}"
        " --activations {input.activations} --out {output} {params.compute} --threads {threads} --no-progress 2> {log}"
