from pipeline_lib import plugins
from pipeline_lib.perturb import perturb_class
from pipeline_lib.runlog import job_log

i = snakemake.input
with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    perturb_class(i.data, int(snakemake.wildcards.cls), snakemake.params.spec, snakemake.output[0], snakemake.threads,
                  generator=i.generator, latents=i.latents)
