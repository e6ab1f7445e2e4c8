from pipeline_lib.runlog import job_log
from pipeline_lib.train import train_victim

i, o = snakemake.input, snakemake.output
with job_log(snakemake.log[0]):
    train_victim(i.data, i.poison, snakemake.params.recipe, int(snakemake.wildcards.seed), o.model, o.log,
                 snakemake.threads)
