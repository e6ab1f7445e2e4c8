from pipeline_lib import plugins
from pipeline_lib.runlog import job_log
from pipeline_lib.tables import collect, write_csv

with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    write_csv(collect(list(snakemake.input), snakemake.params.series), snakemake.output[0])
