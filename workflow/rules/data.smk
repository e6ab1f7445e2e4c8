# Stage 1: every dataset source reduced to one canonical npz.


rule prepare_data:
    localrule: True  # on a cluster it runs on the submit host: downloads need its network (CINIC-10: 688 MB)
    input:
        local_dataset_file,
    output:
        layout.DATA,
    params:
        source=dataset_source,
        train_counts=lambda w: config["datasets"][w.dataset].get("train_counts"),
        data_root=config["data_root"],
        sha256=lambda w: data_version(w.dataset).get("sha256"),
        code=code_version("data"),
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("prepare_data", layout.DATA),
    script:
        "../scripts/prepare_data.py"
