rule build_task:
    input:
        lambda wc: task_code(wc.task),
    output:
        "data/tasks/{task}.parquet",
    log:
        "logs/build_task/{task}.log",
    cache: True
    conda:
        "../../environment.yml"
    params:
        # the task is a param, not only a wildcard: Snakemake's output cache (--cache) keys a job by
        # its command, params and input files, never by its wildcards
        task=lambda wc: wc.task,
        args=lambda wc: build_task_args(wc.task),
    shell:
        "taskvec build-task {params.task} {params.args} --out {output} 2> {log}"
