"""Methods are plug-ins: each attack, trigger, defence and model is one module declaring its traits and config keys;
the catalogue collects them, the config is checked against each method's own keys, and a method added as one
module outside the package plans, trains and reaches the tables with no other file changed."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT, load_config, load_config_dict
from pipeline_lib import plugins
from pipeline_lib.config import ConfigError, check_references

TOY_ATTACK = '''
"""A toy source-specific attack: images of the class before the target, triggered and relabelled."""
from dataclasses import dataclass

import numpy as np

from pipeline_lib.attacks import select
from pipeline_lib.blocks import key
from pipeline_lib.plugins import Attack


@dataclass(frozen=True)
class Config:
    trigger: str = key(help="the trigger's name")
    offset: int = key(1, "the source class is this many classes before the target", minimum=1)


def source_images(y, target, n, rng):
    source = (target - 1) % (int(y.max()) + 1)
    idx = select(np.flatnonzero(y == source), n, rng, f"images of class {source}")
    return idx, np.full(n, target, dtype=np.int64)


METHODS = [Attack(name="toy_source", summary="toy", config=Config, select=source_images)]
'''

TOY_DEFENCE = '''
"""A toy defence: drop the training images whose bottom-right pixel is saturated, then train plainly."""
from dataclasses import dataclass

from pipeline_lib.blocks import key
from pipeline_lib.plugins import Defence


@dataclass(frozen=True)
class Config:
    threshold: int = key(250, "a bottom-right pixel at least this bright is dropped", minimum=0, maximum=255)


def fit(job, config):
    from pipeline_lib.train import train

    keep = job.x[:, -1, -1, 0] < config.threshold
    model, info = train(job.x[keep], job.y[keep], job.num_classes, job.recipe, job.seed, job.device)
    return model, {**info, "defence": {"corner_dropped": int((~keep).sum())}}


METHODS = [Defence(name="toy_corner", summary="toy", config=Config, fit=fit, measures=("corner_dropped",))]
'''

TOY_MODEL = '''
"""A toy model: a one-hidden-layer perceptron, whose linear layers do not stack."""
from dataclasses import dataclass

from pipeline_lib.blocks import key
from pipeline_lib.plugins import Model


@dataclass(frozen=True)
class Config:
    hidden: int = key(16, "hidden units", minimum=1)


def build(c, in_channels, num_classes):
    from torch import nn

    from pipeline_lib.models import Classifier, InputNorm
    features = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * in_channels, c.hidden), nn.ReLU())
    return Classifier(InputNorm("channel", in_channels), features, c.hidden, num_classes)


METHODS = [Model(name="toy_mlp", summary="toy", config=Config, build=build, min_side=lambda c: 1, stacks=False)]
'''


def test_the_catalogue_holds_every_method_of_the_package_with_its_traits():
    cat = plugins.catalogue()
    assert {"badnets", "label_consistent", "input_aware", "none"} <= set(cat["attack"])
    assert {"bottom_right", "four_corner", "center_x", "sig", "blend"} <= set(cat["trigger"])
    assert {"none", "adv_training", "dp_sgd", "frozen_sgd", "abl", "spectral", "activation_clustering"} <= set(
        cat["defence"])
    assert {n for n, d in cat["defence"].items() if d.stacks} == {"none", "adv_training"}
    assert {n for n, d in cat["defence"].items() if d.needs_base} == {
        "spectral", "activation_clustering", "clp", "fine_pruning", "neural_cleanse", "strip", "nad", "anp"}
    assert [n for n, d in cat["defence"].items() if d.assess] == ["strip"]   # the one test-time detector
    assert not cat["attack"]["label_consistent"].relabels and cat["attack"]["badnets"].relabels
    assert cat["attack"]["input_aware"].trigger == "trained" and cat["attack"]["none"].trigger == "none"
    assert cat["attack"]["wanet"].cross and cat["attack"]["wanet"].patterns == ("warp",)   # noise mode, its warp
    assert cat["defence"]["abl"].module == "pipeline_lib.defences.abl"
    assert {"epsilon", "isolation_precision", "detection_recall", "microbatches"} <= set(plugins.measures())


def test_defaults_are_written_once_in_the_method_dataclass():
    abl, config = plugins.settings("defence", {"method": "abl", "gamma": 0.2})
    assert (config.gamma, config.isolation_ratio, config.finetuning_milestones) == (0.2, 0.01, (40,))
    _, dp = plugins.settings("defence", {"method": "dp_sgd", "lr": 0.1, "steps": 5, "noise_multiplier": 1.0})
    assert (dp.lot_size, dp.max_grad_norm, dp.microbatches) == (2000, 1.0, None)


@pytest.mark.parametrize("section, name, block, message", [
    ("defences", "spectral", {"method": "spectral", "eps": 0.05, "gamma": 0.5},
     "defences.spectral.gamma': not a key of defence 'spectral' (its keys: eps)"),
    ("defences", "abl", {"method": "abl", "isolation_ratio": 2},
     "defences.abl.isolation_ratio': 2 is greater than the maximum of 1"),
    ("defences", "dp", {"method": "dp_sgd", "lr": 0.1, "steps": 5}, "defences.dp.noise_multiplier': missing"),
    ("defences", "x", {"method": "fine_prune"}, "defences.x.method': unknown defence method 'fine_prune' (known: "),
    ("defences", "dp", {"method": "dp_sgd", "lr": 0.1, "steps": 5, "noise_multiplier": 1.0, "pretrained": None},
     "defences.dp.pretrained': None is not of type 'string'"),   # an optional key is left out, never null
    ("attacks", "gu", {"method": "badnets", "trigger": "gu", "recipe": "r"},
     "attacks.gu.recipe': not a key of attack 'badnets'"),
    ("triggers", "gu", {"pattern": "bottom_right", "alpha": 0.2},
     "triggers.gu.alpha': not a key of trigger 'bottom_right' (its keys: amplitude)"),
    ("triggers", "sig", {"pattern": "sig", "frequency": 0}, "triggers.sig.frequency': 0 is less than the minimum"),
    ("recipes", "digits_cnn", {"model": "small_cnn", "model_options": {"stages": [1]}, "epochs": 1, "batch_size": 8,
                               "lr": 0.1},
     "recipes.digits_cnn.model_options.stages': not a key of model 'small_cnn' (its keys: norm, width)"),
    ("recipes", "digits_cnn", {"model": "resnet50", "epochs": 1, "batch_size": 8, "lr": 0.1},
     "recipes.digits_cnn.model': unknown model 'resnet50' (known: airbench, "),
    ("recipes", "digits_cnn", {"model": "vgg", "model_options": {"stages": [1, 0]}, "epochs": 1, "batch_size": 8,
                               "lr": 0.1}, "recipes.digits_cnn.model_options.stages.1': 0 is less than the minimum of 1"),
])
def test_a_block_is_checked_against_its_own_methods_keys_by_name(section, name, block, message):
    cfg = load_config("config/demo.yaml")
    cfg[section][name] = block
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        check_references(cfg)


def test_the_methods_page_lists_every_method_as_the_catalogue_declares_it():
    page = (ROOT / "docs/methods.md").read_text()
    assert plugins.markdown() in page, "docs/methods.md's table is stale: paste `python -m pipeline_lib.plugins`"


def test_planning_imports_the_catalogue_without_torch():
    code = ("import sys, yaml; from pipeline_lib import plugins, config; from conftest import load_config; "
            "cfg = load_config('config.yaml'); plugins.use([]); config.check_references(cfg); "
            "config.cohort_plan(cfg); assert 'torch' not in sys.modules, 'planning imported torch'")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "tests", capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_a_broken_plug_in_list_stops_planning_with_one_line(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "twin_badnets.py").write_text(TOY_ATTACK.replace('"toy_source"', '"badnets"'))
    (tmp_path / "no_methods.py").write_text("X = 1\n")
    (tmp_path / "broken_syntax.py").write_text("def (:\n")
    for modules, message in ((["no_such_module"], "cannot import method module 'no_such_module'"),
                             (["broken_syntax"], "cannot import method module 'broken_syntax' \\(SyntaxError"),
                             (["no_methods"], "'no_methods' declares no METHODS list"),
                             (["twin_badnets"], "'badnets' is declared by both 'pipeline_lib.attacks.badnets' and "
                                                "'twin_badnets'")):
        with pytest.raises(plugins.PluginError, match=message):
            plugins.use(modules)
    plugins.use([])


@pytest.mark.slow
def test_a_toy_attack_defence_and_model_as_one_module_each_plan_train_and_reach_the_table(tmp_path):
    for name, code in (("toy_attack", TOY_ATTACK), ("toy_defence", TOY_DEFENCE), ("toy_model", TOY_MODEL)):
        (tmp_path / f"{name}.py").write_text(code)
    cfg = {
        "plugins": ["toy_attack", "toy_defence", "toy_model"],
        "train_threads": 1,
        "datasets": {"digits": {"source": "digits"}},
        "triggers": {"gu": {"pattern": "bottom_right"}},
        "attacks": {"toy": {"method": "toy_source", "trigger": "gu"}},
        "defences": {"corner": {"method": "toy_corner", "threshold": 250}},
        "recipes": {"tiny": {"model": "toy_mlp", "model_options": {"hidden": 8}, "epochs": 1, "batch_size": 64,
                             "lr": 0.05}},
        "figures": {"toy": {"kind": "defence_heatmap", "title": "toy", "dataset": "digits", "attack": "toy",
                            "recipe": "tiny", "targets": [1], "counts": [10, 20], "defences": ["none", "corner"],
                            "metric": ["asr_labelled"]}},
    }
    load_config_dict(yaml.safe_load(yaml.safe_dump(cfg)))  # the schema takes it as it is
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(cfg))
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT / 'src'}", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
                        str(tmp_path), "--configfile", str(tmp_path / "toy.yaml"), "--cores", "2",
                        "results/toy/tables/toy.csv"], capture_output=True, text=True, env=env,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-3000:]
    table = pd.read_csv(tmp_path / "results/toy/tables/toy.csv").set_index("defence")
    poison = np.load(tmp_path / "results/toy/poisoned/digits/toy/t1-n20-s0.npz")
    y_train = np.load(tmp_path / "results/toy/data/digits.npz")["y_train"]
    assert (y_train[poison["indices"]] == 0).all() and (poison["labels"] == 1).all()  # the toy attack selected
    assert (table.loc["corner", "corner_dropped"] >= 10).all()  # the toy defence measured: its column is in the table
    assert table.loc["none", "corner_dropped"].isna().all() and set(table["count"]) == {10, 20}
    victim = tmp_path / "results/toy/victims/digits/toy/tiny/none/t1-n20-s0"
    arch = torch.load(victim / "model.pt", weights_only=True)["arch"]
    assert arch == {"name": "toy_mlp", "in_channels": 1, "num_classes": 10, "hidden": 8}   # the toy model trained,
    # its two-member cohorts member by member (stacks=False: stacking would refuse its linear layers)


def test_every_rule_script_that_may_meet_a_plug_in_loads_the_configs_plug_ins():
    """A plug-in model, attack, trigger or defence must be in the catalogue of every job that builds a model or
    reads a method: only scripts that touch neither (data, GANs, plots of tables, the scorecard) may skip it."""
    untouched = {"prepare_data", "train_gan", "encode_class", "plot_heatmap", "plot_lines", "plot_defence_heatmap",
                 "plot_loss_trace", "plot_filtering", "score_claims"}
    for script in sorted((ROOT / "workflow/scripts").glob("*.py")):
        if script.stem not in untouched:
            assert 'plugins.use(snakemake.config["plugins"])' in script.read_text(), script.name
