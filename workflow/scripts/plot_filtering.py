from pipeline_lib.filtering import filtering_table, read_scores
from pipeline_lib.plots import display_series, filtering_curve
from pipeline_lib.runlog import job_log
from pipeline_lib.tables import write_csv

with job_log(snakemake.log[0]):
    p = snakemake.params
    scores = [read_scores(path) for path in snakemake.input.scores]
    shown = display_series(p.series, [s["attack"] for s in p.sets], p.labels)
    filtering_curve(scores, shown, p.title, snakemake.output.figure)
    write_csv(filtering_table(scores, p.series, p.sets, p.inspected), snakemake.output.table)
