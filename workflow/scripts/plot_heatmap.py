import pandas as pd

from pipeline_lib.plots import asr_heatmap
from pipeline_lib.runlog import job_log

with job_log(snakemake.log[0]):
    p = snakemake.params
    asr_heatmap(pd.read_csv(snakemake.input[0]), p.metric, p.title, snakemake.output[0], p.labels)
