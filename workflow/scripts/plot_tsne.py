from pipeline_lib import plugins
from pipeline_lib.activations import draw_tsne
from pipeline_lib.runlog import job_log

with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    i, p = snakemake.input, snakemake.params
    draw_tsne(list(i.models), list(i.poisons), i.data, p.titles, p.clean_sample, p.title,
              snakemake.output.figure, snakemake.output.table, p.rows, snakemake.config["attacks"])
