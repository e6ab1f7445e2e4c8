# Stage 1b: the attacker's surrogates (standard, adversarially trained, black-box), WGAN-GPs and the trigger
# networks of input-aware attacks.

SURROGATE, GAN_PAIR, DYNAMIC = layout.SURROGATE, layout.GAN_PAIR, layout.DYNAMIC


rule train_surrogate:
    input:
        surrogate_data,
    output:
        model=f"{SURROGATE}/model.pt",
        metrics=f"{SURROGATE}/metrics.json",
    params:
        data=lambda w: data_version(config["surrogates"][w.surrogate]["dataset"]),
        spec=lambda w: canonical(config["surrogates"][w.surrogate]),
        recipe=lambda w: canonical(config["recipes"][config["surrogates"][w.surrogate]["recipe"]]),
        gpu=config["gpu"],
        code=lambda w: recipe_code(config["surrogates"][w.surrogate]["recipe"], "surrogates"),
    threads: config["train_threads"]
    resources:
        gpu=1,
    priority: 10  # everything downstream waits on surrogates
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("train_surrogate", SURROGATE),
    benchmark:
        layout.benchmark("train_surrogate", SURROGATE)
    script:
        "../scripts/train_surrogate.py"


rule train_gan:
    input:
        layout.DATA,
    output:
        generator=f"{GAN_PAIR}/generator.pt",
        log=f"{GAN_PAIR}/train_log.json",
    params:
        data=lambda w: data_version(w.dataset),
        recipe=lambda w: gan_training(w.gan),
        code=code_version("gan"),
    threads: config["train_threads"]
    resources:
        gpu=1,
    priority: 10
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("train_gan", GAN_PAIR),
    benchmark:
        layout.benchmark("train_gan", GAN_PAIR)
    script:
        "../scripts/train_gan.py"


rule encode_class:
    input:
        data=layout.DATA,
        generator=f"{GAN_PAIR}/generator.pt",
    output:
        f"{GAN_PAIR}/latents.npz",
    params:
        data=lambda w: data_version(w.dataset),
        recipe=lambda w: gan_encoding(w.gan),
        code=code_version("gan"),
    threads: config["train_threads"]
    resources:
        gpu=1,
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("encode_class", GAN_PAIR),
    benchmark:
        layout.benchmark("encode_class", GAN_PAIR)
    script:
        "../scripts/encode_class.py"


# The attacker trains its trigger generator and mask jointly with a classifier of its own (Nguyen & Tran):
# metrics.json is that attacker-trained model; the poison stage draws the poisoned training set from trigger.pt.
rule train_input_aware:
    input:
        data=layout.DATA,
    output:
        trigger=f"{DYNAMIC}/trigger.pt",
        model=f"{DYNAMIC}/model.pt",
        log=f"{DYNAMIC}/train_log.json",
    params:
        data=lambda w: data_version(w.dataset),
        recipe=attacker_recipe,
        spec=lambda w: canonical(config["attacks"][w.attack].get("input_aware", {})),
        code=lambda w: recipe_code(config["attacks"][w.attack]["recipe"], "input_aware"),
    threads: config["train_threads"]
    resources:
        gpu=1,
    priority: 10
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("train_input_aware", DYNAMIC),
    benchmark:
        layout.benchmark("train_input_aware", DYNAMIC)
    script:
        "../scripts/train_input_aware.py"
