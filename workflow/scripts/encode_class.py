from pipeline_lib.gan import encode_class
from pipeline_lib.runlog import job_log

i, w = snakemake.input, snakemake.wildcards
with job_log(snakemake.log[0]):
    encode_class(i.data, i.generator, int(w.cls), int(w.partner), snakemake.params.recipe, 0, snakemake.output[0],
                 snakemake.threads)
