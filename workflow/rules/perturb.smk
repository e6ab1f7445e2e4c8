# Stage 2: every training image of a class perturbed once, shared by all targets, rates and seeds. Perturbations
# that read only the data and a surrogate do every class in one process; GAN interpolation, which reads a GAN and
# latents per class, one class per job.

from pipeline_lib.perturb import NETWORK_METHODS  # the methods that run a network, on a GPU where there is one


rule perturb_classes:
    input:
        unpack(perturbation_inputs),
        data=layout.DATA,
    output:
        directory(layout.PERTURBED_CLASSES),
    params:
        data=lambda w: data_version(w.dataset),
        partners=partner_version,
        spec=lambda w: canonical(config["perturbations"][w.perturbation]),
        code=code_version("perturb"),
    wildcard_constraints:
        perturbation=perturbations_where(per_class=False),
    threads: config["train_threads"]
    resources:
        gpu=lambda w: int(config["perturbations"][w.perturbation]["method"] in NETWORK_METHODS),  # pixel space: none
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("perturb_classes", layout.PERTURBED_CLASSES),
    benchmark:
        layout.benchmark("perturb_classes", layout.PERTURBED_CLASSES)
    script:
        "../scripts/perturb_classes.py"


rule link_perturbed:
    localrule: True  # seconds of work: on a cluster it runs on the submit host
    input:
        layout.PERTURBED_CLASSES,
    output:
        layout.PERTURBED,
    wildcard_constraints:
        perturbation=perturbations_where(per_class=False),
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("link_perturbed", layout.PERTURBED),
    shell:
        link_shell(("{input:q}/c{wildcards.cls}.npz", "{output:q}"))


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
    wildcard_constraints:
        perturbation=perturbations_where(per_class=True),
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
