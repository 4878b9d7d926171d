rule convert_model:
    input:
        code("convert-model"),
    output:
        directory("data/models/{model}"),
    log:
        "logs/convert_model/{model}.log",
    benchmark:
        "logs/benchmarks/convert_model/{model}.tsv"
    conda:
        "../../environment.yml"
    params:
        source=lambda wc: config["models"][wc.model]["source"],
    shell:
        "taskvec convert-model {params.source:q} --out {output} 2> {log}"
