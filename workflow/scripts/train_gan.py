from pipeline_lib.gan import train_gan
from pipeline_lib.runlog import job_log

w, o = snakemake.wildcards, snakemake.output
with job_log(snakemake.log[0]):
    train_gan(snakemake.input[0], (int(w.cls), int(w.partner)), snakemake.params.recipe, 0, o.generator, o.log,
              snakemake.threads)
