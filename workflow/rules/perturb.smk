# Stage 2: every training image of a class perturbed once, shared by all targets, rates and seeds.


rule perturb_class:
    input:
        unpack(perturbation_inputs),
        data=layout.DATA,
    output:
        layout.PERTURBED,
    params:
        data=lambda w: data_version(w.dataset),
        spec=lambda w: canonical(config["perturbations"][w.perturbation]),
        code=code_version("perturb"),
    threads: config["train_threads"]
    resources:
        gpu=1,
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("perturb_class", layout.PERTURBED),
    benchmark:
        layout.benchmark("perturb_class", layout.PERTURBED)
    script:
        "../scripts/perturb_class.py"
