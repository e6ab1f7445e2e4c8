from pipeline_lib.data import load_planned, save_prepared, with_train_counts
from pipeline_lib.runlog import job_log

with job_log(snakemake.log[0]):
    p = snakemake.params
    ds = load_planned(p.source, p.data_root, p.sha256)
    save_prepared(snakemake.output[0], with_train_counts(ds, p.train_counts))
