# Stage 3: select, trigger and label the poisoned training examples of one (target, amount, seed).


rule poison_dataset:
    input:
        "results/data/{dataset}.npz",
    output:
        "results/poisoned/{dataset}/{attack}/t{target}-{amount}-s{seed}.npz",
    params:
        method=lambda w: config["attacks"][w.attack]["method"],
        trigger=attack_trigger,
        code=code_version("attacks"),
    conda:
        "../envs/pipeline.yaml"
    log:
        "results/logs/poison_dataset/{dataset}/{attack}/t{target}-{amount}-s{seed}.log",
    script:
        "../scripts/poison_dataset.py"
