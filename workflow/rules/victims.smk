# Stages 4-5: train the victims of each cohort in one job (one stacked network where the defence allows), then
# evaluate them in one job on clean and triggered test images; each victim's files are then linked into its own
# folder, where every figure reads them.

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


rule link_victim:
    input:
        lambda w: f"{victim_cohort(w)}/models",
    output:
        model=f"{VICTIM}/model.pt",
        log=f"{VICTIM}/train_log.json",
    params:
        model=lambda w, input: f"{input[0]}/{member_name(w.attack, w.target, w.amount)}/model.pt",
        log=lambda w, input: f"{input[0]}/{member_name(w.attack, w.target, w.amount)}/train_log.json",
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("link_victim", VICTIM),
    shell:
        link_shell(("{params.model:q}", "{output.model:q}"), ("{params.log:q}", "{output.log:q}"))


rule evaluate_cohort:
    input:
        unpack(evaluation_inputs),
        data=layout.DATA,
    output:
        directory(f"{COHORT}/metrics"),
    params:
        members=evaluation_members,
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


rule link_metrics:
    input:
        lambda w: f"{victim_cohort(w)}/metrics",
    output:
        f"{VICTIM}/metrics.json",
    params:
        metrics=lambda w, input: f"{input[0]}/{member_name(w.attack, w.target, w.amount)}.json",
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("link_metrics", VICTIM),
    shell:
        link_shell(("{params.metrics:q}", "{output:q}"))
