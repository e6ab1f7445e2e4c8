# Stage 3: select, (perturb,) trigger and label the poisoned examples of one (target, amount, seed);
# the data filter of thesis 7.3 scores each poisoned training set.

rule poison_dataset:
    localrule: True  # seconds of work: on a cluster it runs on the submit host
    input:
        unpack(attack_perturbed),
        unpack(attack_network),
        data=layout.DATA,
    output:
        layout.POISONED,
    params:
        data=lambda w: data_version(w.dataset),
        attack=lambda w: without_label(config["attacks"][w.attack]),
        trigger=attack_trigger,
        code=poisoning_code,
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("poison_dataset", layout.POISONED),
    script:
        "../scripts/poison_dataset.py"


rule score_training_set:
    input:
        data=layout.DATA,
        poison=layout.POISONED,
        filter=f"{layout.SURROGATE}/model.pt",
    output:
        layout.SCORES,
    params:
        data=lambda w: data_version(w.dataset),
        code=code_version("filtering"),
    resources:
        gpu=1,
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("score_training_set", layout.SCORES),
    script:
        "../scripts/score_training_set.py"
