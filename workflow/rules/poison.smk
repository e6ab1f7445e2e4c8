# Stage 3: select, (perturb,) trigger and label the poisoned examples of one (target, amount, seed);
# the data filter of thesis 7.3 scores each poisoned training set.

POISONED = "{dataset}/{attack}/t{target}-{amount}-s{seed}"


rule poison_dataset:
    input:
        unpack(attack_perturbed),
        unpack(attack_network),
        data="results/data/{dataset}.npz",
    output:
        f"results/poisoned/{POISONED}.npz",
    params:
        method=lambda w: config["attacks"][w.attack]["method"],
        trigger=attack_trigger,
        code=code_version("attacks"),
    conda:
        "../envs/pipeline.yaml"
    log:
        f"results/logs/poison_dataset/{POISONED}.log",
    script:
        "../scripts/poison_dataset.py"


rule score_training_set:
    input:
        data="results/data/{dataset}.npz",
        poison=f"results/poisoned/{POISONED}.npz",
        filter="results/surrogates/{surrogate}/model.pt",
    output:
        "results/filtering/{dataset}/{surrogate}/{attack}/t{target}-{amount}-s{seed}.npz",
    params:
        code=code_version("filtering"),
    resources:
        gpu=1,
    conda:
        "../envs/pipeline.yaml"
    log:
        "results/logs/score_training_set/{dataset}/{surrogate}/{attack}/t{target}-{amount}-s{seed}.log",
    script:
        "../scripts/score_training_set.py"
