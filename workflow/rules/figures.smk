# Stage 6: tidy tables and the thesis-style figures; each plot rule draws the figure kinds `figure_kinds` assigns it.


rule aggregate_metrics:
    localrule: True  # seconds of work: on a cluster it runs on the submit host
    input:
        victim_metrics,
    output:
        report(
            layout.TABLE,
            caption="../report/table.rst",
            category=figure_section,
            labels={"figure": "{figure}", "content": "table"},
        ),
    params:
        series=series_labels,
        code=tables_code(),
    wildcard_constraints:
        figure=figures_of(*figure_kinds.names(table="metrics")),
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("aggregate_metrics", layout.FIGURE),
    script:
        "../scripts/aggregate_metrics.py"


rule aggregate_all_metrics:
    localrule: True  # seconds of work: on a cluster it runs on the submit host
    input:
        all_victim_metrics,
    output:
        report(
            layout.ALL_VICTIMS,
            caption="../report/all_victims.rst",
            category="Tables",
            labels={"table": "every trained victim"},
        ),
    params:
        series=lambda w, input: [""] * len(input),
        code=tables_code(),
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("aggregate_metrics", layout.ALL_VICTIMS),
    script:
        "../scripts/aggregate_metrics.py"


rule plot_heatmap:
    localrule: True  # seconds of work: on a cluster it runs on the submit host
    input:
        layout.TABLE,
    output:
        report(
            layout.FIGURE,
            caption="../report/heatmap.rst",
            category=figure_section,
            labels={"figure": "{figure}", "content": "figure"},
        ),
    params:
        title=figure_param("title"),
        settings=lambda w: figure_settings(config, w.figure),
        labels=lambda w: figure_kinds.figure_labels(config, w.figure),
        metric=figure_param("metric"),
        code=code_version("plots"),
    wildcard_constraints:
        figure=figures_drawn_by("plot_heatmap"),
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("plot_heatmap", layout.FIGURE),
    script:
        "../scripts/plot_heatmap.py"


rule plot_lines:
    localrule: True  # seconds of work: on a cluster it runs on the submit host
    input:
        layout.TABLE,
    output:
        report(
            layout.FIGURE,
            caption="../report/lines.rst",
            category=figure_section,
            labels={"figure": "{figure}", "content": "figure"},
        ),
    params:
        title=figure_param("title"),
        settings=lambda w: figure_settings(config, w.figure),
        labels=lambda w: figure_kinds.figure_labels(config, w.figure),
        metric=figure_param("metric"),
        code=code_version("plots"),
    wildcard_constraints:
        figure=figures_drawn_by("plot_lines"),
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("plot_lines", layout.FIGURE),
    script:
        "../scripts/plot_lines.py"


rule plot_defence_heatmap:
    localrule: True  # seconds of work: on a cluster it runs on the submit host
    input:
        layout.TABLE,
    output:
        figure=report(
            layout.FIGURE,
            caption="../report/defence_heatmap.rst",
            category=figure_section,
            labels={"figure": "{figure}", "content": "figure"},
        ),
        table=report(
            layout.SUMMARY,
            caption="../report/defence_table.rst",
            category=figure_section,
            labels={"figure": "{figure}", "content": "summary table"},
        ),
    params:
        title=figure_param("title"),
        settings=lambda w: figure_settings(config, w.figure),
        labels=lambda w: figure_kinds.figure_labels(config, w.figure),
        metric=figure_param("metric"),
        defences=lambda w: list(dict.fromkeys(v.defence for _, v in figure_rows(config, w.figure))),
        code=code_version("plots"),
    wildcard_constraints:
        figure=figures_drawn_by("plot_defence_heatmap"),
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("plot_defence_heatmap", layout.FIGURE),
    script:
        "../scripts/plot_defence_heatmap.py"


rule plot_tsne:
    input:
        unpack(tsne_inputs),
    output:
        figure=report(
            layout.FIGURE,
            caption="../report/tsne.rst",
            category=figure_section,
            labels={"figure": "{figure}", "content": "figure"},
        ),
        table=report(
            layout.TABLE,
            caption="../report/table.rst",
            category=figure_section,
            labels={"figure": "{figure}", "content": "table"},
        ),
    params:
        data=lambda w: data_version(figure_rows(config, w.figure)[0][1].dataset),
        title=figure_param("title"),
        settings=lambda w: figure_settings(config, w.figure),
        titles=tsne_titles,
        rows=victim_descriptions,
        clean_sample=figure_param("clean_sample"),
        code=code_version("activations"),
    wildcard_constraints:
        figure=figures_drawn_by("plot_tsne"),
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("plot_tsne", layout.FIGURE),
    script:
        "../scripts/plot_tsne.py"


rule plot_loss_trace:
    localrule: True  # seconds of work: on a cluster it runs on the submit host
    input:
        logs=victim_train_logs,
        table=layout.TABLE,
    output:
        report(
            layout.FIGURE,
            caption="../report/loss_trace.rst",
            category=figure_section,
            labels={"figure": "{figure}", "content": "figure"},
        ),
    params:
        title=figure_param("title"),
        settings=lambda w: figure_settings(config, w.figure),
        code=code_version("plots"),
    wildcard_constraints:
        figure=figures_drawn_by("plot_loss_trace"),
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("plot_loss_trace", layout.FIGURE),
    script:
        "../scripts/plot_loss_trace.py"


rule plot_filtering:
    localrule: True  # seconds of work: on a cluster it runs on the submit host
    input:
        scores=figure_scores,
    output:
        figure=report(
            layout.FIGURE,
            caption="../report/filtering.rst",
            category=figure_section,
            labels={"figure": "{figure}", "content": "figure"},
        ),
        table=report(
            layout.TABLE,
            caption="../report/table.rst",
            category=figure_section,
            labels={"figure": "{figure}", "content": "table"},
        ),
    params:
        title=figure_param("title"),
        settings=lambda w: figure_settings(config, w.figure),
        labels=lambda w: figure_kinds.figure_labels(config, w.figure),
        series=poison_labels,
        sets=poison_descriptions,
        inspected=figure_param("inspected"),
        code=code_version("plots"),
    wildcard_constraints:
        figure=figures_drawn_by("plot_filtering"),
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("plot_filtering", layout.FIGURE),
    script:
        "../scripts/plot_filtering.py"


rule plot_filtered_examples:
    localrule: True  # seconds of work: on a cluster it runs on the submit host
    input:
        data=lambda w: layout.data(config["figures"][w.figure]["dataset"]),
        scores=figure_scores,
        poisons=figure_poison_files,
    output:
        report(
            layout.FIGURE,
            caption="../report/filtered_examples.rst",
            category=figure_section,
            labels={"figure": "{figure}", "content": "figure"},
        ),
    params:
        data=lambda w: data_version(config["figures"][w.figure]["dataset"]),
        title=figure_param("title"),
        settings=lambda w: figure_settings(config, w.figure),
        labels=lambda w: figure_kinds.figure_labels(config, w.figure),
        series=poison_labels,
        inspect=figure_param("inspect"),
        code=code_version("galleries"),
    wildcard_constraints:
        figure=figures_drawn_by("plot_filtered_examples"),
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("plot_filtered_examples", layout.FIGURE),
    script:
        "../scripts/plot_filtered_examples.py"


rule plot_examples:
    localrule: True  # seconds of work: on a cluster it runs on the submit host
    input:
        data=lambda w: layout.data(config["figures"][w.figure]["dataset"]),
        perturbed=example_perturbations,
    output:
        report(
            layout.FIGURE,
            caption="../report/examples.rst",
            category=figure_section,
            labels={"figure": "{figure}", "content": "figure"},
        ),
    params:
        data=lambda w: data_version(config["figures"][w.figure]["dataset"]),
        title=figure_param("title"),
        settings=lambda w: figure_settings(config, w.figure),
        columns=lambda w: [[label, canonical(c)] for label, c in config["figures"][w.figure]["columns"].items()],
        classes=lambda w: example_classes(config, w.figure),
        perturbed_keys=example_perturbed_keys,
        per_class=figure_param("per_class"),
        shown_label=figure_param("shown_label"),
        triggers=lambda w: {
            c["trigger"]: trigger_of(c["trigger"])
            for c in config["figures"][w.figure]["columns"].values()
            if "trigger" in c
        },
        code=lambda w: code_version("galleries", *example_trigger_modules(w)),
    wildcard_constraints:
        figure=figures_drawn_by("plot_examples"),
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("plot_examples", layout.FIGURE),
    script:
        "../scripts/plot_examples.py"


rule score_claims:
    localrule: True  # seconds of work: on a cluster it runs on the submit host
    input:
        unpack(claim_tables),
    output:
        csv=report(
            layout.SCORECARD,
            caption="../report/scorecard.rst",
            category="Reproduction scorecard",
            labels={"table": "scorecard (CSV)"},
        ),
        md=report(
            layout.SCORECARD_MD,
            caption="../report/scorecard.rst",
            category="Reproduction scorecard",
            labels={"table": "scorecard"},
        ),
        png=report(
            layout.SCORECARD_FIGURE,
            caption="../report/scorecard.rst",
            category="Reproduction scorecard",
            labels={"figure": "scorecard"},
        ),
    params:
        claims=config["claims"],
        factor=config.get("reported_factor", FACTOR),
        code=code_version("claims"),
    conda:
        "../envs/pipeline.yaml"
    log:
        layout.log("score_claims", layout.SCORECARD),
    script:
        "../scripts/score_claims.py"
