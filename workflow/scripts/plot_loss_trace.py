import pandas as pd

from pipeline_lib.artifacts import load_json
from pipeline_lib.plots import loss_trace
from pipeline_lib.runlog import job_log

i = snakemake.input
with job_log(snakemake.log[0]):
    names = pd.read_csv(i.table).set_index("target")["target_name"].to_dict()
    loss_trace([load_json(p) for p in i.logs], names, snakemake.params.title, snakemake.output[0])
