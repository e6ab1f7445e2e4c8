from pipeline_lib.data import load_source, save_prepared
from pipeline_lib.runlog import job_log

with job_log(snakemake.log[0]):
    save_prepared(snakemake.output[0], load_source(snakemake.params.source, snakemake.params.data_root))
