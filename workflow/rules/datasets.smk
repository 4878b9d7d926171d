rule build_task:
    input:
        lambda wc: task_code(wc.task),
    output:
        "data/tasks/{task}.parquet",
    log:
        "logs/build_task/{task}.log",
    conda:
        "../../environment.yml"
    params:
        args=lambda wc: build_task_args(wc.task),
    shell:
        "taskvec build-task {wildcards.task} {params.args} --out {output} 2> {log}"
