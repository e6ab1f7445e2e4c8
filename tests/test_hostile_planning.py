"""Every check planning can make from the config and the npz headers is made at planning: claims that select rows
their figure does not plan, sizes beyond any real experiment, image dtypes and sizes, and what Snakemake hands the
workflow (nesting, empty files, --config text), each refused with one line naming the key or file."""
import subprocess

import numpy as np
import pytest

from conftest import ROOT, load_config, load_config_dict, raw_config
from pipeline_lib import plugins
from pipeline_lib.artifacts import ArtifactError
from pipeline_lib.blocks import BlockError
from pipeline_lib.config import MAX_YAML_DEPTH, ConfigError, check_references, load_yaml
from pipeline_lib.data import REGISTRY_TRAIN_COUNTS, describe
from test_hostile_inputs import SNAKEMAKE, demo_config, plan, write_npz


def refusal(cfg: dict) -> str:
    """The one-line error planning gives for a config (validated as the workflow validates it)."""
    load_config_dict(cfg)
    plugins.use(cfg["plugins"])
    with pytest.raises(ConfigError) as e:
        check_references(cfg)
    assert "\n" not in str(e.value)
    return str(e.value)


# --------------------------------------------------------------------------- claims (item 8)


def test_a_claim_on_a_defence_the_figure_leaves_out_is_refused_at_planning_not_after_training():
    cfg = raw_config("config/leaderboard.yaml")
    cfg["claims"] = {k: c for k, c in cfg["claims"].items()  # the digits claims: no data files needed
                     if all(c[p]["figure"] == "leaderboard-digits"
                            for p in ("measured", "below", "close_to") if p in c)}
    cfg["figures"] = {"leaderboard-digits": cfg["figures"]["leaderboard-digits"]}  # nor the real subsets' figures
    cfg["datasets"] = {"digits": cfg["datasets"]["digits"]}
    cfg["figures"]["leaderboard-digits"]["defences"].remove("anp")
    assert refusal(cfg).startswith("config key 'claims.anp-removes-badnets-digits.measured.where.defence': figure "
                                   "'leaderboard-digits' has no defence 'anp' (it has: 'none', 'fine_pruning', ")


def claim(name: str, part: str = "measured"):
    """An edit of one measure of a demo claim."""
    return lambda update: lambda c: c["claims"][name][part].update(update)


AT = claim("seed001-at-restores-backdoor-accuracy")
NOISE = claim("thesis-5-1-noise-cuts-asr")


@pytest.mark.parametrize("edit, message", [
    (AT({"where": {"defence": "nope"}}), "measured.where.defence': figure 'seed001-adversarial-training' has no "
                                         "defence 'nope' (it has: 'none', 'adv')"),
    (NOISE({"where": {"amount": ["n135", "n14"]}}), "measured.where.amount': figure 'fig5-1' has no amount 'n14' "
                                                    "(it has: 'n13', 'n40', 'n135')"),
    (NOISE({"where": {"target": "4"}}), "measured.where.target': figure 'fig5-1' has no target '4' (it has: 4)"),
    (NOISE({"where": {"seed": 7}}), "measured.where.seed': figure 'fig5-1' has no seed 7"),
    (NOISE({"where": {"rate": 0.5}}), "measured.where.rate': figure 'fig5-1' has no rate 0.5"),
    (NOISE({"where": {"count": 134}}), "measured.where.count': figure 'fig5-1' has no count 134 (it has: 13, 40, 135)"),
    (NOISE({"where": {"model": "vgg"}}), "measured.where.model': figure 'fig5-1' has no model 'vgg'"),
    (NOISE({"where": {"method": "wanet"}}), "measured.where.method': figure 'fig5-1' has no method 'wanet'"),
    (AT({"series": "clean model", "where": {"amount": "n34"}}), "measured.where.amount': figure "  # clean: n0
                                                                "'seed001-adversarial-training' has no row with "
                                                                "amount 'n34' among those the measure's other "
                                                                "selectors pick"),
    (AT({"metric": "nc_names_target"}), "measured.metric': no defence of the rows it reads measures nc_names_target"),
    (AT({"metric": "silhouette"}), "measured.metric': 'silhouette' is not a column of the table of figure "
                                   "'seed001-adversarial-training'"),
    (lambda c: c["figures"]["fig3-2"].update(targets=[0]), "thesis-3-8-adversarial-beats-baseline.above': selects "
                                                           "no row of target 1, which the measured rows have"),
    (claim("thesis-3-6-asr-increases-with-eps")({"series": ["l2 40"]}),
     "thesis-3-6-asr-increases-with-eps.along': a trend needs two or more series values, the measured rows have 1"),
])
def test_a_claim_selecting_rows_its_figure_does_not_plan_is_refused_by_key(edit, message):
    cfg = demo_config()
    edit(cfg)
    assert message in refusal(cfg)


def test_every_preset_s_claims_select_planned_rows(shared_data, monkeypatch):
    monkeypatch.chdir(ROOT)  # the presets name their archives relative to the checkout
    for path in ("config.yaml", "config/demo.yaml", "config/leaderboard.yaml", "config/shared_subsets.yaml"):
        cfg = load_config(path)
        plugins.use(cfg["plugins"])
        check_references(cfg)


# --------------------------------------------------------------------------- sizes (item 9)


@pytest.mark.parametrize("block, message", [
    ({"method": "neural_cleanse", "batch_size": 10 ** 12}, "key 'batch_size': 1000000000000 is greater than the max"),
    ({"method": "anp", "batch_size": 1e12}, "key 'batch_size': 1000000000000.0 is greater than the maximum of 65536"),
    ({"method": "anp", "iterations": 10 ** 12}, "key 'iterations': 1000000000000 is greater than the maximum"),
    ({"method": "strip", "overlays": 10 ** 12}, "key 'overlays': 1000000000000 is greater than the maximum of 10000"),
    ({"method": "strip", "seed": 2 ** 40}, "key 'seed': 1099511627776 is greater than the maximum of 4294967295"),
    ({"method": "nad", "betas": [500, -1, 1000]}, "key 'betas.1': -1 is less than the minimum of 0"),
    ({"method": "abl", "batch_size": 10 ** 9}, "key 'batch_size': 1000000000 is greater than the maximum"),
])
def test_a_size_beyond_any_real_experiment_is_refused_by_its_key(block, message):
    with pytest.raises(BlockError) as e:
        plugins.settings("defence", block)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("section, name, key", [
    ("recipes", "digits_cnn", "batch_size"), ("gans", "wgan", "steps"), ("gans", "wgan", "batch_size"),
    ("perturbations", "pgd_l2_40", "steps")])
def test_a_recipe_gan_or_perturbation_size_beyond_any_real_experiment_is_refused_by_its_key(section, name, key):
    from snakemake.exceptions import WorkflowError

    from pipeline_lib.config import schema_error_line

    cfg = demo_config()
    cfg[section][name][key] = 10 ** 12
    with pytest.raises(WorkflowError) as e:
        load_config_dict(cfg)
    assert schema_error_line(e.value.__context__).startswith(f"config key '{section}.{name}.{key}': 1000000000000 is "
                                                             "greater than the maximum of ")


def test_integers_written_as_floats_become_ints_as_json_schema_reads_them():
    nc = plugins.settings("defence", {"method": "neural_cleanse", "batch_size": 64.0, "epochs": 2e1})[1]
    assert (nc.batch_size, nc.epochs) == (64, 20) and type(nc.batch_size) is int and type(nc.epochs) is int


def test_neural_cleanse_allocates_targets_for_its_share_not_its_batch_size(monkeypatch):
    import torch

    from pipeline_lib.defences.neural_cleanse import Config, reverse_trigger
    sizes, full = [], torch.full
    monkeypatch.setattr(torch, "full", lambda size, *a, **k: (sizes.append(size), full(size, *a, **k))[1])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    reverse_trigger(model, torch.rand(5, 1, 4, 4), 1, Config(epochs=1, batch_size=65_536),
                    torch.Generator().manual_seed(0))
    assert sizes == [(5,)]


def test_a_bad_size_in_a_config_block_is_refused_naming_the_config_key():
    cfg = demo_config()
    cfg["defences"]["nc"] = {"method": "neural_cleanse", "batch_size": 10 ** 12}
    assert refusal(cfg) == "config key 'defences.nc.batch_size': 1000000000000 is greater than the maximum of 65536"


# --------------------------------------------------------------------------- npz headers (item 10)


def archive(tmp_path, x_train=((20, 8, 8, 1), "u1"), x_test=((4, 8, 8, 1), "u1"), y_train=None):
    """An archive whose image arrays are headers alone (never read at planning) and whose labels are real."""
    y = np.arange(x_train[0][0]) % 10 if y_train is None else y_train
    members = {"x_train": x_train, "y_train": ((len(y),), "i8"), "x_test": x_test, "y_test": ((x_test[0][0],), "i8")}
    return write_npz(tmp_path / "d.npz", members, {"y_train": y, "y_test": np.arange(x_test[0][0]) % 10})


@pytest.mark.parametrize("change, message", [
    ({"x_train": ((20, 8, 8, 1), "<u2")}, "array 'x_train' has dtype uint16, expected uint8 (0..255)"),
    ({"x_test": ((4, 8, 7, 1), "u1")}, "x_train images (8, 8, 1) differ from x_test (8, 7, 1)"),
    ({"x_test": ((4, 8, 8, 3), "u1")}, "x_train images (8, 8, 1) differ from x_test (8, 8, 3)"),
    ({"x_test": ((0, 8, 8, 1), "u1")}, "x_test is empty (no test images)"),
])
def test_image_dtype_and_size_are_read_from_the_headers_at_planning(tmp_path, change, message):
    path = archive(tmp_path, **change)
    with pytest.raises(ArtifactError) as e:
        describe(f"npz:{path}")
    assert str(e.value).startswith(f"{path}: {message}")


def test_wanet_on_images_that_are_not_square_is_refused_at_planning_naming_key_and_file(tmp_path):
    path = archive(tmp_path, x_train=((1347, 8, 10, 1), "u1"), x_test=((10, 8, 10, 1), "u1"),
                   y_train=np.repeat(np.arange(10), REGISTRY_TRAIN_COUNTS["digits"]))
    cfg = demo_config()
    cfg["datasets"]["d"] = {"source": f"npz:{path}"}
    cfg["triggers"]["warp"] = {"pattern": "warp"}
    cfg["attacks"]["wanet"] = {"method": "wanet", "trigger": "warp"}
    cfg["figures"] = {"w": {**cfg["figures"]["fig3-2"], "dataset": "d", "attack": "wanet"}}
    cfg["claims"] = {}
    assert refusal(cfg) == (f"config key 'figures.w.attack': trigger 'warp' does not fit the images of dataset 'd' "
                            f"(npz:{path}): WaNet's warp takes square images, got 8x10")


# --------------------------------------------------------------------------- what Snakemake hands over (item 11)


def test_a_config_nested_too_deep_is_refused_with_its_line_before_it_recurses(tmp_path):
    (tmp_path / "deep.yaml").write_text("datasets: {}\nfigures: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(tmp_path / "deep.yaml")
    assert str(e.value) == f"{tmp_path}/deep.yaml, line 2: nested more than {MAX_YAML_DEPTH} deep, refused"


@pytest.mark.parametrize("text, message", [
    ("", "c.yaml: empty; a config file is a mapping of top-level keys (datasets, figures, ...)"),
    ("# nothing\n", "c.yaml: empty; a config file is a mapping of top-level keys (datasets, figures, ...)"),
    ("- datasets\n- figures\n", "c.yaml, line 1: a list, not the mapping of top-level keys (datasets, figures, ...) "
                                "a config file is"),
])
def test_a_config_file_that_is_not_a_mapping_is_named(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_yaml(tmp_path / "c.yaml")
    assert str(e.value) == f"{tmp_path}/{message}"


def test_an_empty_config_yaml_is_named_not_blamed_on_the_workflow(tmp_path):
    assert plan(tmp_path, "", as_preset=False) == [
        "invalid config: config.yaml: empty; a config file is a mapping of top-level keys (datasets, figures, ...)"]


def test_a_number_nested_in_config_says_config_passes_it_as_text(tmp_path):
    r = subprocess.run([*SNAKEMAKE, "--directory", str(tmp_path), "--configfile", str(ROOT / "config/demo.yaml"),
                        "--config", "recipes={digits_cnn: {model: small_cnn, epochs: 1, batch_size: 8, lr: .inf}}",
                        "-n"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    lines = [line for line in r.stderr.splitlines() if not line.startswith("Using workflow specific profile")]
    assert r.returncode == 1 and lines == [
        "invalid config: config key 'recipes.digits_cnn.epochs': '1' is not of type 'number' (--config passes every "
        "value inside {...}, and .inf or .nan anywhere, as text: set them in a --configfile)"]
