from pipeline_lib import plugins
from pipeline_lib.filtering import score_training_set
from pipeline_lib.runlog import job_log

i = snakemake.input
with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    score_training_set(i.data, i.poison, i.filter, snakemake.output[0])
