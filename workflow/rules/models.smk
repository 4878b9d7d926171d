rule convert_model:
    input:
        code("convert-model"),
    output:
        directory("data/models/{model}"),
    log:
        "logs/convert_model/{model}.log",
    # convert once per server: with --cache (and SNAKEMAKE_OUTPUT_CACHE) another study reuses the
    # model directory; hence no benchmark file (a job taken from the cache has no timing to give)
    cache: True
    conda:
        "../../environment.yml"
    params:
        source=lambda wc: config["models"][wc.model]["source"],
    shell:
        "taskvec convert-model {params.source:q} --out {output} 2> {log}"
