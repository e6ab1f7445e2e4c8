# Stage 2: every training image of a class perturbed once, shared by all targets, rates and seeds.


rule perturb_class:
    input:
        unpack(perturbation_inputs),
        data="results/data/{dataset}.npz",
    output:
        "results/perturbed/{dataset}/{perturbation}/c{cls}.npz",
    params:
        spec=lambda w: canonical(config["perturbations"][w.perturbation]),
        code=code_version("perturb"),
    threads: config["train_threads"]
    resources:
        gpu=1,
    conda:
        "../envs/pipeline.yaml"
    log:
        "results/logs/perturb_class/{dataset}/{perturbation}/c{cls}.log",
    benchmark:
        "results/benchmarks/perturb_class/{dataset}/{perturbation}/c{cls}.tsv"
    script:
        "../scripts/perturb_class.py"
