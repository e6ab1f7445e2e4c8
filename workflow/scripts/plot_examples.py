from pipeline_lib import plugins
from pipeline_lib.galleries import examples
from pipeline_lib.runlog import job_log

i, p = snakemake.input, snakemake.params
with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    examples(i.data, dict(zip(map(tuple, p.perturbed_keys), i.perturbed)), p.columns, p.classes, p.per_class, p.shown_label, p.triggers, p.title,
             snakemake.output[0])
