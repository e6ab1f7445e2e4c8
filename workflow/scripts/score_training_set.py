from pipeline_lib import plugins
from pipeline_lib.filtering import score_training_set
from pipeline_lib.runlog import job_log

i, w = snakemake.input, snakemake.wildcards
with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    score_training_set(i.data, i.poison, snakemake.config["attacks"][w.attack], int(w.target), w.amount, i.filter,
                       snakemake.output[0])
