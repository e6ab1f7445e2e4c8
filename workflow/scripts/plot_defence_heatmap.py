import pandas as pd

from pipeline_lib.plots import defence_heatmap
from pipeline_lib.runlog import job_log

with job_log(snakemake.log[0]):
    p, o = snakemake.params, snakemake.output
    defence_heatmap(pd.read_csv(snakemake.input[0]), p.metric, p.defences, p.title, o.figure, o.table, p.labels)
