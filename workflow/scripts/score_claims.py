from pipeline_lib.claims import write_scorecard
from pipeline_lib.runlog import job_log

with job_log(snakemake.log[0]):
    write_scorecard(snakemake.params.claims, dict(snakemake.input.items()), snakemake.output.csv,
                    snakemake.output.md, snakemake.output.png, snakemake.params.factor)
