from pipeline_lib.runlog import job_log
from pipeline_lib.victims import train_victim

i, o, p = snakemake.input, snakemake.output, snakemake.params
with job_log(snakemake.log[0]):
    train_victim(i.data, i.poison, p.recipe, p.defence, int(snakemake.wildcards.seed), o.model, o.log,
                 snakemake.threads, pretrained=i.get("pretrained"), base=i.get("base"))
