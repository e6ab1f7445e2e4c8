import pandas as pd

from pipeline_lib.plots import asr_lines
from pipeline_lib.runlog import job_log

with job_log(snakemake.log[0]):
    p = snakemake.params
    asr_lines(pd.read_csv(snakemake.input[0]), p.metric, p.title, snakemake.output[0], p.labels)
