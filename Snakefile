# Backdoor data-poisoning workflow: data -> surrogates/GANs -> perturbed classes -> poison sets -> victims
# -> metrics -> tables -> figures.
# Usage: snakemake --cores 8 --resources gpu=2         (config.yaml: the full thesis reproduction)
#        snakemake --configfile config/demo.yaml --cores 2   (offline demo on scikit-learn digits)
#        snakemake results/figures/fig2-1.png         (one figure and only what it needs)
#        snakemake --configfile config/demo.yaml results/demo/figures/fig2-1.png   (each config writes below
#                                                      its own `results` folder; config.yaml's is results/)
#        snakemake --profile profiles/slurm            (the same grid on a SLURM cluster, a GPU per training job)
#        snakemake --report report.html                (every figure and table with its caption, one HTML file)

from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/surrogates.smk"
include: "workflow/rules/perturb.smk"
include: "workflow/rules/poison.smk"
include: "workflow/rules/victims.smk"
include: "workflow/rules/figures.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        expand(layout.FIGURE, figure=config["figures"]),
        layout.ALL_VICTIMS,
        [layout.SCORECARD, layout.SCORECARD_MD, layout.SCORECARD_FIGURE] if config["claims"] else [],
    default_target: True


onsuccess:
    print(layout.orientation(workflow.overwrite_configfiles or [], bool(config["claims"])))
