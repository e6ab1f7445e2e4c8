# Stages 4-5: train the victims of each cohort in one job (one stacked network where the defence allows), then
# evaluate them in one job on clean and triggered test images; each victim's model, training log and metrics are
# then linked into its own folder (one link job per victim), where every figure reads them.

VICTIM = layout.VICTIM
COHORT = layout.COHORT


rule train_cohort:
    input:
        unpack(training_inputs),
        data=layout.DATA,
    output:
        directory(f"{COHORT}/models"),
    params:
        members=cohort_members,
        bases=base_models,
        data=lambda w: data_version(w.dataset),
        recipe=lambda w: canonical(config["recipes"][w.recipe]),
        defence=defence_spec,
        gpu=config["gpu"],
        code=training_code,
    threads: config["train_threads"]
    resources:
        gpu=1,
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("train_cohort", COHORT),
    benchmark:
        layout.benchmark("train_cohort", COHORT)
    script:
        "../scripts/train_cohort.py"


rule evaluate_cohort:
    input:
        unpack(evaluation_inputs),
        data=layout.DATA,
    output:
        directory(f"{COHORT}/metrics"),
    params:
        members=evaluation_members,
        defence=defence_spec,
        data=lambda w: data_version(w.dataset),
        code=evaluation_code,
    resources:
        gpu=1,
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("evaluate_cohort", COHORT),
    script:
        "../scripts/evaluate_cohort.py"


rule evaluate_attacker:
    input:
        data=layout.DATA,
        model=f"{layout.DYNAMIC}/model.pt",
        trigger=f"{layout.DYNAMIC}/trigger.pt",
        log=f"{layout.DYNAMIC}/train_log.json",
    output:
        f"{layout.DYNAMIC}/metrics.json",
    params:
        describe=attacker_describe,
        data=lambda w: data_version(w.dataset),
        code=code_version("evaluate"),
    resources:
        gpu=1,
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("evaluate_attacker", layout.DYNAMIC),
    script:
        "../scripts/evaluate_attacker.py"


rule link_victim:
    localrule: True  # seconds of work: on a cluster it runs on the submit host
    input:
        models=lambda w: f"{victim_cohort(w)}/models",
        metrics=lambda w: f"{victim_cohort(w)}/metrics",
    output:
        model=f"{VICTIM}/model.pt",
        log=f"{VICTIM}/train_log.json",
        metrics=f"{VICTIM}/metrics.json",
    params:
        member=lambda w: member_name(w.attack, w.target, w.amount),
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("link_victim", VICTIM),
    shell:
        link_shell(
            ("{input.models:q}/{params.member:q}/model.pt", "{output.model:q}"),
            ("{input.models:q}/{params.member:q}/train_log.json", "{output.log:q}"),
            ("{input.metrics:q}/{params.member:q}.json", "{output.metrics:q}"),
        )
