# Backdoor data-poisoning workflow: data -> surrogates/GANs -> perturbed classes -> poison sets -> victims
# -> metrics -> tables -> figures.
# Usage: snakemake --cores 8 --resources gpu=2         (config.yaml: the full thesis reproduction)
#        snakemake --configfile config/demo.yaml --cores 2   (offline demo on scikit-learn digits)
#        snakemake results/figures/fig2-1.png         (one figure and only what it needs)

from snakemake.utils import min_version

min_version("9.0")


if not config:  # --configfile replaces the default rather than merging into it

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/surrogates.smk"
include: "workflow/rules/perturb.smk"
include: "workflow/rules/poison.smk"
include: "workflow/rules/victims.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        expand("results/figures/{figure}.png", figure=config["figures"]),
        "results/tables/all_victims.csv",
    default_target: True
