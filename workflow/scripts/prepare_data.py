from pipeline_lib.data import load_source, save_prepared, with_train_counts
from pipeline_lib.runlog import job_log

with job_log(snakemake.log[0]):
    p = snakemake.params
    save_prepared(snakemake.output[0], with_train_counts(load_source(p.source, p.data_root), p.train_counts))
