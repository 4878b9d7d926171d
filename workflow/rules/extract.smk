rule extract_activations:
    input:
        prompts="data/prompts/{model}/{task}.parquet",
        model="data/models/{model}",
        code=code("store.py", "models.py", "architectures.py", "hooks.py", "forward.py", "prompts.py", "extract.py"),
    output:
        "data/activations/{model}/{task}.parquet",
    params:
        compute=COMPUTE_ARGS,
    threads: 1
    conda:
        "../../environment.yml"
    log:
        "logs/extract_activations/{model}/{task}.log",
    benchmark:
        "logs/benchmarks/extract_activations/{model}/{task}.tsv"
    shell:
        "taskvec extract --model-dir {input.model} --prompts {input.prompts} --out {output}"
        " {params.compute} --threads {threads} --no-progress 2> {log}"
