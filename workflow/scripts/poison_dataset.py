from pipeline_lib import plugins
from pipeline_lib.poisons import write_poison_set
from pipeline_lib.runlog import job_log

i, w, p = snakemake.input, snakemake.wildcards, snakemake.params
with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    write_poison_set(i.data, snakemake.output[0], p.attack, p.trigger, int(w.target), w.amount, int(w.seed),
                     i.get("perturbed"), i.get("trigger_net"))
