from pipeline_lib import plugins
from pipeline_lib.runlog import job_log
from pipeline_lib.surrogates import train_surrogate

p, o = snakemake.params, snakemake.output
with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    train_surrogate(snakemake.input[0], p.spec, p.recipe, p.spec["seed"], o.model, o.metrics, snakemake.threads,
                    gpu=p.gpu)
