# Stages 4-5: train a victim on each poisoned set under its defence, then evaluate it on clean and triggered
# test images.

VICTIM = layout.VICTIM


rule train_victim:
    input:
        unpack(defence_inputs),
        data=layout.DATA,
        poison=layout.POISONED,
    output:
        model=f"{VICTIM}/model.pt",
        log=f"{VICTIM}/train_log.json",
    params:
        data=lambda w: data_version(w.dataset),
        recipe=lambda w: canonical(config["recipes"][w.recipe]),
        defence=defence_spec,
        code=code_version("victims"),
    threads: config["train_threads"]
    resources:
        gpu=1,
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("train_victim", VICTIM),
    benchmark:
        layout.benchmark("train_victim", VICTIM)
    script:
        "../scripts/train_victim.py"


rule evaluate_victim:
    input:
        unpack(attack_network),
        model=f"{VICTIM}/model.pt",
        train_log=f"{VICTIM}/train_log.json",
        data=layout.DATA,
    output:
        f"{VICTIM}/metrics.json",
    params:
        data=lambda w: data_version(w.dataset),
        trigger=attack_trigger,
        describe=lambda w: {
            "dataset": w.dataset,
            "attack": w.attack,
            "method": config["attacks"][w.attack]["method"],
            "recipe": w.recipe,
            "defence": w.defence,
            "target": int(w.target),
            "amount": w.amount,
            "seed": int(w.seed),
        },
        code=code_version("evaluate"),
    resources:
        gpu=1,
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("evaluate_victim", VICTIM),
    script:
        "../scripts/evaluate_victim.py"
