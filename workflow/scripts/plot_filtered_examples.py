from pipeline_lib import plugins
from pipeline_lib.config import figure_poison_sets
from pipeline_lib.galleries import filtered_examples
from pipeline_lib.plots import display_series
from pipeline_lib.runlog import job_log

i, p = snakemake.input, snakemake.params
with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    sets = [s for _, s in figure_poison_sets(snakemake.config, snakemake.wildcards.figure)]
    shown = display_series(p.series, [s.attack for s in sets], p.labels)
    filtered_examples(i.data, list(i.scores), list(i.poisons), sets, snakemake.config["attacks"], shown,
                      p.inspect, p.title, snakemake.output[0])
