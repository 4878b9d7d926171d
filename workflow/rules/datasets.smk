rule build_task:
    input:
        lambda wc: task_code(wc.task),
    output:
        "data/tasks/{task}.parquet",
    params:
        args=lambda wc: build_task_args(wc.task),
    conda:
        "../../environment.yml"
    log:
        "logs/build_task/{task}.log",
    shell:
        "taskvec build-task {wildcards.task} {params.args} --out {output} 2> {log}"


rule make_prompts:
    input:
        task="data/tasks/{task}.parquet",
        model="data/models/{model}",
        code=code("store.py", "prompts.py"),
    output:
        "data/prompts/{model}/{task}.parquet",
    params:
        seed=lambda wc: config["tasks"][wc.task].get("seed", 0),
        sizes=lambda wc: " ".join(
            f"--{flag} {config['sizes'][key]}"
            for flag, key in (
                ("k", "k"),
                ("n-baseline", "baseline"),
                ("n-dev", "dev"),
                ("n-test", "test"),
                ("n-dummies", "dummies"),
            )
        ),
        demonstration=lambda wc: config["prompt"]["demonstration"],
        query=lambda wc: config["prompt"]["query"],
        separator=lambda wc: config["prompt"]["separator"],
    conda:
        "../../environment.yml"
    log:
        "logs/make_prompts/{model}/{task}.log",
    shell:
        "taskvec make-prompts --task-file {input.task} --model-dir {input.model} --out {output}"
        " --seed {params.seed} {params.sizes} --demonstration {params.demonstration:q}"
        " --query {params.query:q} --separator {params.separator:q} 2> {log}"
