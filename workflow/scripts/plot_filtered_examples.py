from pipeline_lib.galleries import filtered_examples
from pipeline_lib.runlog import job_log

i, p = snakemake.input, snakemake.params
with job_log(snakemake.log[0]):
    filtered_examples(i.data, list(i.scores), list(i.poisons), p.series, p.inspect, p.title, snakemake.output[0])
