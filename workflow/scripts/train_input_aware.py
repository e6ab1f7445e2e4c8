from pipeline_lib import plugins
from pipeline_lib.input_aware import write_input_aware_attack
from pipeline_lib.runlog import job_log

i, o, p, w = snakemake.input, snakemake.output, snakemake.params, snakemake.wildcards
with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    write_input_aware_attack(i.data, p.recipe, p.spec, int(w.target), int(w.seed), snakemake.threads,
                             o.trigger, o.model, o.log)
