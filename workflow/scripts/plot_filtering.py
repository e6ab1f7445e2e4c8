from pipeline_lib.filtering import read_scores
from pipeline_lib.plots import filtering_curve
from pipeline_lib.runlog import job_log

with job_log(snakemake.log[0]):
    filtering_curve([read_scores(p) for p in snakemake.input.scores], snakemake.params.series,
                    snakemake.params.title, snakemake.output[0])
