# Stage 6: tidy tables and the thesis-style figures.


rule aggregate_metrics:
    input:
        victim_metrics,
    output:
        "results/tables/{figure}.csv",
    params:
        code=code_version("tables"),
    conda:
        "../envs/pipeline.yaml"
    log:
        "results/logs/aggregate_metrics/{figure}.log",
    script:
        "../scripts/aggregate_metrics.py"


rule aggregate_all_metrics:
    input:
        all_victim_metrics,
    output:
        "results/tables/all_victims.csv",
    params:
        code=code_version("tables"),
    conda:
        "../envs/pipeline.yaml"
    log:
        "results/logs/aggregate_metrics/all_victims.log",
    script:
        "../scripts/aggregate_metrics.py"


rule plot_heatmap:
    input:
        "results/tables/{figure}.csv",
    output:
        report(
            "results/figures/{figure}.png",
            caption="../report/heatmap.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    params:
        title=lambda w: config["figures"][w.figure]["title"],
        metric=lambda w: config["figures"][w.figure]["metric"],
        code=code_version("plots"),
    conda:
        "../envs/pipeline.yaml"
    log:
        "results/logs/plot_heatmap/{figure}.log",
    script:
        "../scripts/plot_heatmap.py"
