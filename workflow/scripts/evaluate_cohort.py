from pipeline_lib import plugins
from pipeline_lib.evaluate import evaluate_cohort
from pipeline_lib.runlog import job_log

i, p = snakemake.input, snakemake.params
with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    evaluate_cohort(i.data, list(i.models), list(i.train_logs), p.members, snakemake.output[0])
