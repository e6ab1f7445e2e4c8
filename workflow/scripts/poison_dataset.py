from pipeline_lib.attacks import write_poison_set
from pipeline_lib.runlog import job_log

w, p = snakemake.wildcards, snakemake.params
with job_log(snakemake.log[0]):
    write_poison_set(snakemake.input[0], snakemake.output[0], p.method, p.trigger, int(w.target), w.amount, int(w.seed))
