"""Figure grids expand into the victims and poison sets they need; wrong references are named by key."""
import re

import numpy as np
import pytest

from conftest import load_config
from pipeline_lib.config import (ConfigError, check_references, cohort_plan, figure_poison_sets, figure_rows,
                                 figure_settings, figure_victims, trained_victims)

THESIS_FIGURES = ["fig1-2", "fig1-3", "fig2-1", "fig3-1", "fig3-2", "fig3-3", "fig3-4", "fig3-5", "fig3-6", "fig3-7",
                  "fig3-8", "fig3-9", "fig3-10", "fig3-11", "fig3-12", "fig3-13", "fig3-14", "fig4-1", "fig4-2",
                  "fig4-3", "fig4-4", "fig4-5", "figA-1", "figA-2", "figA-3-1", "figA-3-2", "figA-3-3"]


def full_config():
    return load_config("config.yaml")


DEFENCE_FIGURES = ["fig5-1", "fig5-2", "seed001-adversarial-training", "seed001-tsne", "seed001-unbalanced",
                   "seed003-abl", "defence-grid"]


@pytest.mark.parametrize("path", ["config.yaml", "config/demo.yaml"])
def test_every_thesis_figure_and_defence_result_of_the_seeds_is_configured(path):
    cfg = load_config(path)
    assert [f for f in cfg["figures"] if f in THESIS_FIGURES] == THESIS_FIGURES
    assert set(DEFENCE_FIGURES) <= set(cfg["figures"])
    check_references(cfg)


def test_the_leaderboard_preset_judges_each_first_wave_paper_on_every_dataset(shared_data):
    cfg = load_config("config/leaderboard.yaml")
    check_references(cfg)
    papers = ("fp-", "nc-", "nad-", "anp-", "clp-", "strip-", "wanet-keeps")
    for dataset in ("digits", "mnist", "cifar10"):
        named = [c for c in cfg["claims"] if c.endswith(f"-{dataset}")]
        assert all(any(c.startswith(p) for c in named) for p in papers), dataset
        assert {cfg["claims"][c]["measured"]["figure"] for c in named if not c.startswith("wanet-keeps")} == {
            f"leaderboard-{dataset}"}


def test_full_config_plans_ten_targets_by_five_amounts_per_all_class_figure():
    cfg = full_config()
    for fig in ("fig2-1", "fig3-2", "fig3-7", "fig3-8", "fig3-11", "fig4-4", "fig4-5"):
        victims = figure_victims(cfg, fig)  # Figures 4-4 and 4-5: CINIC-10 and its fallback, an attack each
        assert len(victims) == 50 * len({v.attack for v in victims}) and {v.target for v in victims} == set(range(10))
    assert {v.amount for v in figure_victims(cfg, "fig2-1")} == {"n20", "n75", "n300", "n1250", "n5000"}
    assert str(figure_victims(cfg, "fig3-2")[0].path) == "results/victims/cifar10/baseline/thesis_resnet/none/t0-p0.004-s0"


def test_series_override_the_figure_grid():
    cfg = full_config()
    rows = figure_rows(cfg, "fig3-13")
    assert len(rows) == 20 and {v.target for _, v in rows} == {6}
    assert {(label, v.recipe) for label, v in rows if label == "four corners, augmentation"} == \
        {("four corners, augmentation", "thesis_resnet_augment")}
    assert len(figure_victims(cfg, "fig3-14")) == 150  # three series of 10 classes x 5 rates (one without augmentation)
    sets = figure_poison_sets(cfg, "figA-1")
    assert {(label, p.amount) for label, p in sets} == {("Gu et al.", "n75"), ("adversarial (l2)", "n300"),
                                                        ("GAN (tau 0.2)", "n300")}


@pytest.mark.parametrize("path", ["config.yaml", "config/demo.yaml", "config/shared_subsets.yaml",
                                  "config/leaderboard.yaml"])
def test_every_figure_is_filed_under_the_chapter_it_mirrors(path):
    for name, spec in load_config(path)["figures"].items():
        if name.startswith("seed"):
            assert spec["section"].startswith("Seed " + name[4:7]), name
        elif "fig" in name:
            chapter = name.split("fig")[1].split("-")[0]
            assert spec["section"].startswith("Thesis ch. " + chapter if chapter != "A" else "Thesis appendix A"), name


def test_report_captions_list_the_settings_of_each_series():
    cfg = full_config()
    assert figure_settings(cfg, "fig2-1") == [
        "dataset cifar10; attack gu; recipe thesis_resnet; defence none; targets all; "
        "counts 20, 75, 300, 1250, 5000; seeds 0"]
    assert [line.split(":")[0] for line in figure_settings(cfg, "fig3-1")] == \
        ["Gu et al.", "adversarial (l2)", "GAN (tau 0.2)"]
    assert figure_settings(cfg, "fig3-1")[0].endswith("filter trusted")
    assert figure_settings(cfg, "fig1-3")[:2] == ["dataset cifar10; classes 2", "original: the training image unchanged"]


def test_a_defences_list_repeats_every_series_once_per_defence():
    cfg = load_config("config/demo.yaml")
    rows = figure_rows(cfg, "defence-grid")
    assert len(rows) == 5 * 6 and {v.defence for _, v in rows} == {"none", "adv", "dp_1", "abl", "spectral",
                                                                    "clustering"}
    assert {v.amount for label, v in rows if label == "SIG"} == {"p1"}
    assert {v.defence for _, v in figure_rows(cfg, "fig5-1")} == {"sgd_frozen", "dp_0", "dp_033", "dp_067", "dp_1"}


def test_image_and_filtering_figures_train_no_victims():
    cfg = full_config()
    assert figure_victims(cfg, "fig3-4") == [] and figure_victims(cfg, "fig3-1") == []
    assert str(figure_poison_sets(cfg, "fig3-1")[0][1].scores("trusted")) == \
        "results/filtering/cifar10/trusted/gu/t0-n100-s0.npz"


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["figures"]["fig2-1"].update(attack="sleeper"), "figures.fig2-1.attack': unknown attack 'sleeper'"),
    (lambda c: c["figures"]["fig2-1"].update(targets=[3, 12]), "class 12 does not exist"),
    (lambda c: c["attacks"]["l2_300"].update(perturbation="pgd_l9"),
     "attacks.l2_300.perturbation': unknown perturbation 'pgd_l9'"),
    (lambda c: c["attacks"]["gu"].update(perturbation="pgd_l2_300"),
     "attacks.gu.perturbation': not a key of attack 'badnets'"),
    (lambda c: c["perturbations"]["pgd_l2_300"].update(surrogate="oracle"),
     "perturbations.pgd_l2_300.surrogate': unknown surrogate 'oracle'"),
    (lambda c: c["surrogates"]["blackbox"].update(recipe="vgg19"), "surrogates.blackbox.recipe': unknown recipe"),
    (lambda c: c["figures"]["fig4-1"].update(recipe="thesis_resnet"),
     "recipes.thesis_resnet.trace_per_epoch': figure 'fig4-1' plots training losses"),
    (lambda c: c["figures"]["fig3-6"]["series"]["baseline"].update(attack="nope"),
     "figures.fig3-6.series.baseline.attack': unknown attack 'nope'"),
    (lambda c: c["figures"]["fig3-6"].pop("recipe"), "figures.fig3-6.series.baseline.recipe': missing"),
    (lambda c: c["figures"]["fig3-4"]["columns"]["l2 300"].update(perturbation="pgd_l2_301"),
     "figures.fig3-4.columns.l2 300.perturbation': unknown perturbation"),
    (lambda c: c["figures"]["fig3-4"].pop("columns"), "figures.fig3-4.columns': missing (a 'examples' figure"),
    (lambda c: c["figures"]["fig3-1"].pop("filter"), "figures.fig3-1.filter': missing (a 'filtering' figure"),
    (lambda c: c["figures"]["fig5-1"]["series"]["SGD"].update(defence="dp_2"),
     "figures.fig5-1.series.SGD.defence': unknown defence 'dp_2'"),
    (lambda c: c["defences"]["dp_1"].update(pretrained="imagenet"), "defences.dp_1.pretrained': unknown surrogate"),
    (lambda c: c["figures"]["fig3-8"].update(metric=["asr_labelled", "clean_accuracy"]),
     "figures.fig3-8.metric': a 'asr_heatmap' figure draws one metric"),
    (lambda c: c["attacks"]["input_aware"].update(recipe="preact18"), "attacks.input_aware.recipe': unknown recipe"),
    (lambda c: c["defences"].update(anp0={"method": "anp", "eps": 0, "alpha": 0}),   # nothing to optimise
     "defences.anp0': defence 'anp': eps 0 with alpha 0 leaves no loss to optimise the masks on"),
    (lambda c: c["defences"].update(nad0={"method": "nad", "teacher_epochs": 0}),    # the victim as its own teacher
     "defences.nad0.teacher_epochs': 0 is less than or equal to the minimum of 0"),
    (lambda c: c["attacks"].update(wanet_gu={"method": "wanet", "trigger": "gu"}),
     "attacks.wanet_gu.trigger': attack 'wanet' takes a trigger of pattern warp, not 'bottom_right'"),
])
def test_wrong_references_are_reported_by_key(edit, message):
    cfg = full_config()
    edit(cfg)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        check_references(cfg)


@pytest.mark.parametrize("edit, message", [
    (lambda a: a.pop("recipe"), "attacks.input_aware.recipe': missing"),       # the attacker's classifier
    (lambda a: a.update(trigger="gu"),                                           # its trigger is trained
     "attacks.input_aware.trigger': not a key of attack 'input_aware' (its keys: recipe, input_aware)"),
    (lambda a: a["input_aware"].update(p_atack=0.1),                             # a misspelt hyperparameter
     "attacks.input_aware.input_aware.p_atack': not a key of input-aware"),
])
def test_malformed_input_aware_attacks_are_refused_by_key(edit, message):
    cfg = full_config()
    edit(cfg["attacks"]["input_aware"])
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        check_references(cfg)


def demo_config():
    return load_config("config/demo.yaml")


def reported_claim(figure: str, metric: str, reported: float) -> dict:
    """A claim of a reported number of a demo figure's metric."""
    return {"source": "s", "measured": {"figure": figure, "metric": metric}, "reported": reported}


@pytest.mark.parametrize("edit, message", [
    # classes, labels and image sizes beyond the data are refused at planning, not deep in a job
    (lambda c: c["figures"]["fig1-2"].update(classes=[0, 10]), "figures.fig1-2.classes': class 10 does not exist"),
    (lambda c: c["figures"]["fig1-2"].update(shown_label=11), "figures.fig1-2.shown_label': class 11 does not exist"),
    (lambda c: c["recipes"]["digits_vgg"]["model_options"].update(stages=[1, 1, 1, 1]),
     "surrogates.blackbox.recipe': recipe 'digits_vgg' (vgg) needs images of at least 16x16 pixels, dataset "
     "'digits' has 8x8"),
    (lambda c: c["recipes"]["digits_cnn"].update(model="airbench"), "needs images of at least 9x9 pixels"),
    # settings that would be silently wrong: an interpolation towards the class itself, keys a kind ignores
    (lambda c: c["perturbations"]["gan_t02"].update(partner_offset=10),
     "perturbations.gan_t02.partner_offset': 10 is a multiple of the 10 classes"),
    (lambda c: c["figures"]["fig3-2"].update(filter="trusted"), "figures.fig3-2.filter': not used by a 'asr_heatmap'"),
    (lambda c: c["figures"]["fig1-2"].update(rates=[0.5]), "figures.fig1-2.rates': not used by a 'examples' figure"),
    (lambda c: c["figures"]["fig3-2"].update(per_class=2), "figures.fig3-2.per_class': not used"),
    (lambda c: c["triggers"].update(warp={"pattern": "warp"}) or c["attacks"].update(                # noise mode
        wanet={"method": "wanet", "trigger": "warp", "cross_ratio": 50}) or c["figures"]["fig2-1"].update(
        attack="wanet"), "figures.fig2-1.counts': 34 poisons 34 and modifies 1700 more of the 1347 training images"),
    # DER rates a defence against no defence: a figure drawing it needs undefended victims beside
    (lambda c: c["figures"]["defence-grid"].update(defences=["adv", "abl"], metric=["asr_labelled", "der"]),
     "figures.defence-grid.metric': DER rates each defence against no defence, so series 'BadNets' needs the "
     "defence 'none' too"),
    (lambda c: c["figures"]["fig5-1"].update(metric="der"),     # its series are defended only
     "figures.fig5-1.metric': DER rates each defence against no defence, so series 'SGD' needs"),
    # a reported number the one tolerance rule cannot read: off its scale, a rate of 0 without its printed precision
    (lambda c: c["claims"].update(x=reported_claim("fig3-2", "asr_labelled", 92)),
     "claims.x.reported': 92 is not a rate in 0..1 (write 92% as 0.92)"),
    (lambda c: c["claims"].update(x=reported_claim("fig3-2", "asr_labelled", 0.0)),
     "claims.x.precision': a reported rate of 0 needs the resolution the seed printed it at (0.01 for '0%')"),
    (lambda c: c["claims"].update(x=reported_claim("seed001-tsne", "silhouette", 0.5)),
     "claims.x.reported': silhouette runs from -1 to 1 and has no odds"),
    (lambda c: c["claims"].update(x=reported_claim("fig4-1", "final_loss_all", 0.0)),
     "claims.x.reported': 0 is not a positive loss"),
    # only an input-aware attack trains a classifier of its own, without a defence and without a poison set
    (lambda c: c["figures"]["seed003-abl"]["series"]["SIG"].update(classifier="attacker"),
     "figures.seed003-abl.series.SIG.classifier': attack 'sig' trains no classifier of its own"),
    (lambda c: c["figures"]["seed003-abl"].pop("defences") and c["figures"]["seed003-abl"]["series"]["input-aware"]
     .update(defence="abl"),
     "figures.seed003-abl.series.input-aware.classifier': the attacker's classifier is trained without a defence, "
     "not under 'abl'"),
    (lambda c: c["figures"]["seed001-tsne"].update(attack="dynamic", classifier="attacker"),
     "figures.seed001-tsne.classifier': a 'tsne' figure needs a victim's poisoned training set"),
])
def test_settings_the_data_or_the_figure_kind_cannot_honour_are_refused_by_key(edit, message):
    cfg = demo_config()
    edit(cfg)
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_references(cfg)


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["figures"]["fig3-2"].update(targets=[0, 0]), "figures.fig3-2.targets"),      # duplicate rows
    (lambda c: c["figures"]["fig3-2"].update(seeds=[1, 1]), "figures.fig3-2.seeds"),
    (lambda c: c["figures"]["fig3-2"].update(rates=[0.5, 0.5]), "figures.fig3-2.rates"),
    (lambda c: c.update(figures={}), "figures"),                                               # nothing to build
])
def test_the_schema_refuses_duplicates_and_an_empty_figure_list(edit, key):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from conftest import ROOT, raw_config
    cfg = raw_config("config/demo.yaml")
    edit(cfg)
    with pytest.raises(WorkflowError) as err:
        validate(cfg, str(ROOT / "workflow/schemas/config.schema.yaml"))
    assert ".".join(map(str, err.value.__context__.absolute_path)).startswith(key)


def npz_config(tmp_path, y_train, image_side=8):
    """The demo config with fig3-2 and fig1-2 on a local archive of the given training labels."""
    y_train = np.asarray(y_train)
    np.savez(tmp_path / "d.npz", x_train=np.zeros((len(y_train), image_side, image_side, 1), np.uint8),
             y_train=y_train, x_test=np.zeros((3, image_side, image_side, 1), np.uint8),
             y_test=np.array([0, 1, 2], y_train.dtype))
    cfg = demo_config()
    cfg["datasets"]["local"] = {"source": f"npz:{tmp_path / 'd.npz'}"}
    cfg["figures"]["fig3-2"].update(dataset="local")
    cfg["figures"]["fig1-2"].update(dataset="local", classes=[0, 1])
    return cfg


def test_amounts_and_rows_are_checked_against_the_class_sizes_of_a_local_archive(tmp_path):
    labels = np.repeat(np.arange(10, dtype=np.uint8), 4)        # unsigned labels, 4 images per class
    check_references(npz_config(tmp_path, labels))              # rates 0.25 and 1.0 of 4 images: 1 and 4
    cfg = npz_config(tmp_path, labels)
    cfg["figures"]["fig3-2"].update(rates=[0.1])
    with pytest.raises(ConfigError, match=r"figures\.fig3-2\.rates': 0\.1 poisons 0 of the 4 images of class 0"):
        check_references(cfg)
    cfg = npz_config(tmp_path, labels)
    cfg["figures"]["fig1-2"].update(per_class=5)
    with pytest.raises(ConfigError, match=r"figures\.fig1-2\.per_class': 5 rows per class, but class 0"):
        check_references(cfg)
    cfg = npz_config(tmp_path, labels)
    cfg["datasets"]["local"]["train_counts"] = [4] * 9 + [5]
    with pytest.raises(ConfigError, match=r"datasets\.local\.train_counts': asks for 5 images of class 9"):
        check_references(cfg)


def test_the_class_count_comes_from_both_splits(tmp_path):
    cfg = npz_config(tmp_path, np.repeat(np.arange(2), 10))   # labels 0, 1 in training; 0, 1, 2 in the test split
    cfg["figures"]["fig3-2"].update(targets=[2], rates=[1.0])
    with pytest.raises(ConfigError, match=r"0 of the 0 images of class 2"):
        check_references(cfg)                                  # class 2 exists (test split), but has no training image


def test_model_minimum_sides_match_the_registered_models():
    import torch

    from pipeline_lib.config import min_image_side
    from pipeline_lib.models import build

    for model, options in [("vgg", {"stages": [1, 1, 1]}), ("small_cnn", {}), ("airbench", {"width": 4}),
                           ("thesis_resnet", {"units": 1})]:
        side = min_image_side(model, options)
        net = build({"name": model, "in_channels": 1, "num_classes": 3, **options}).eval()
        assert net(torch.zeros(2, 1, side, side)).shape == (2, 3)
        if side > 1:
            with pytest.raises(RuntimeError):
                net(torch.zeros(2, 1, side - 1, side - 1))


def test_the_schema_offers_exactly_what_the_registries_define():
    import yaml

    from conftest import ROOT
    from pipeline_lib import data, figure_kinds, perturb

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    props = schema["properties"]
    item = lambda section: props[section]["additionalProperties"]["properties"]  # noqa: E731
    assert set(item("perturbations")["method"]["enum"]) == set(perturb.PERTURBATIONS)
    assert item("figures")["kind"]["enum"] == list(figure_kinds.KINDS)
    sources = item("datasets")["source"]["pattern"]
    assert sources == "^(" + "|".join(data.DATASETS) + "|npz:.+)$" and set(data.REGISTRY_INFO) == set(data.DATASETS)


def test_a_clean_victim_is_planned_once_and_read_by_every_figure_that_names_it():

    cfg = load_config("config/demo.yaml")
    cfg["figures"]["fig3-2"]["series"] = {"poisoned": {}, "clean model": {"attack": "clean"}}
    both = ("fig3-2", "seed001-adversarial-training")
    clean = [v for f in both for v in figure_victims(cfg, f) if v.attack == "clean"]
    assert {(v.target, v.amount, v.seed) for v in clean} == {(0, "n0", 0)}
    shared = next(v for v in clean if v.defence == "none")
    assert shared in figure_victims(cfg, both[0]) and shared in figure_victims(cfg, both[1])
    assert trained_victims(cfg)[shared] == set(both)
    assert sum(v == shared for v in cohort_plan(cfg)) == 1
    check_references(cfg)  # no targets or amounts are checked against a clean victim's empty poison set


def test_each_figure_kind_is_drawn_by_the_plot_rule_the_registry_names():
    import re

    from conftest import ROOT
    from pipeline_lib import figure_kinds

    rules = (ROOT / "workflow/rules/figures.smk").read_text()
    drawn = dict(re.findall(r'^rule (plot_\w+):.*?figures_drawn_by\("(\w+)"\)', rules, re.S | re.M))
    assert drawn and all(rule == name for rule, name in drawn.items())   # each plot rule asks for its own kinds
    assert set(drawn) == {k.rule for k in figure_kinds.KINDS.values()}
    assert figure_kinds.names(rule="plot_lines") == ("asr_lines", "per_class_lines")
    assert figure_kinds.unread_keys("filtering")[:3] == ["recipe", "defence", "defences"]
    assert "inspect" in figure_kinds.unread_keys("filtering") and "filter" not in figure_kinds.unread_keys("filtering")


def test_an_attackers_own_classifier_is_a_row_its_attack_trains_not_a_victim():
    cfg = demo_config()
    rows = [(label, v) for label, v in figure_rows(cfg, "seed003-abl") if label.startswith("input-aware")]
    assert [(label, v.defence) for label, v in rows] == [
        ("input-aware", "none"),                        # the figure's `defences` repeat it only undefended
        ("input-aware, CNN on its fixed poisons", "none"), ("input-aware, CNN on its fixed poisons", "abl")]
    own = rows[0][1]
    assert str(own.path) == "results/dynamic/digits/dynamic/t0-s0"                    # the attack's own folder
    assert own.recipe == cfg["attacks"]["dynamic"]["recipe"]
    assert own not in trained_victims(cfg) and rows[1][1] in trained_victims(cfg)
