from pipeline_lib.perturb import perturb_class
from pipeline_lib.runlog import job_log

i = snakemake.input
with job_log(snakemake.log[0]):
    perturb_class(i.data, int(snakemake.wildcards.cls), snakemake.params.spec, snakemake.output[0], snakemake.threads,
                  generator=i.generator, latents=i.latents)
