from pipeline_lib.attacks import write_poison_set
from pipeline_lib.runlog import job_log

i, w, p = snakemake.input, snakemake.wildcards, snakemake.params
with job_log(snakemake.log[0]):
    write_poison_set(i.data, snakemake.output[0], p.method, p.trigger, int(w.target), w.amount, int(w.seed),
                     i.get("perturbed"), i.get("trigger_net"))
