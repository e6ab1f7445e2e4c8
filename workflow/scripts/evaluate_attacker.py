from pipeline_lib import plugins
from pipeline_lib.evaluate import evaluate_attacker
from pipeline_lib.runlog import job_log

i = snakemake.input
with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    evaluate_attacker(i.data, i.model, i.trigger, i.log, snakemake.params.describe, snakemake.output[0])
