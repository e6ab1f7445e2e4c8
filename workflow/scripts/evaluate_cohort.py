from pipeline_lib import plugins
from pipeline_lib.evaluate import evaluate_cohort
from pipeline_lib.runlog import job_log

i, p = snakemake.input, snakemake.params
with job_log(snakemake.log[0]):
    plugins.use(snakemake.config["plugins"])
    folders = [f"{i.models}/{m['name']}" for m in p.members]
    evaluate_cohort(i.data, [f"{f}/model.pt" for f in folders], [f"{f}/train_log.json" for f in folders], p.members,
                    p.defence, snakemake.output[0])
