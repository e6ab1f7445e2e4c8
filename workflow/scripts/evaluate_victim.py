from pipeline_lib.runlog import job_log
from pipeline_lib.evaluate import evaluate_victim

i, p = snakemake.input, snakemake.params
with job_log(snakemake.log[0]):
    evaluate_victim(i.model, i.data, i.train_log, p.trigger, p.describe, snakemake.output[0], i.get("trigger_net"))
