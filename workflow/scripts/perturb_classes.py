from pipeline_lib import plugins
from pipeline_lib.perturb import perturb_classes
from pipeline_lib.runlog import job_log

i = snakemake.input
with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    perturb_classes(i.data, snakemake.params.spec, snakemake.output[0], snakemake.threads, surrogate=i.get("surrogate"),
                    partners=i.get("partners"))
