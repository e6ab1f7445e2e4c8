from pipeline_lib import plugins
from pipeline_lib.runlog import job_log
from pipeline_lib.victims import train_cohort

i, p = snakemake.input, snakemake.params
with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    train_cohort(i.data, list(i.poisons), p.members, snakemake.config["attacks"], p.recipe, p.defence,
                 int(snakemake.wildcards.seed), snakemake.output[0], snakemake.threads, pretrained=i.get("pretrained"),
                 bases=p.bases or None, gpu=p.gpu)
