"""Every figure kind draws from its minimal config (its required keys and one grid, no series, no defences): planning
accepts it and its plot, fed what that config makes (small synthetic tables and files), writes a PNG; what cannot
draw is refused at planning in one line naming the key."""
import copy
from functools import cache

import numpy as np
import pandas as pd
import pytest

from conftest import load_config, load_config_dict
from pipeline_lib import figure_kinds, galleries, plots
from pipeline_lib.artifacts import save_npz
from pipeline_lib.config import ConfigError, check_references
from pipeline_lib.data import Dataset, save_prepared
from pipeline_lib.layout import Poisoned
from pipeline_lib.poisons import write_poison_set

GRID = {"dataset": "digits", "attack": "gu", "targets": [0], "counts": [4]}


@cache
def demo() -> dict:
    """The demo config, read once."""
    return load_config("config/demo.yaml")


def minimal(kind: str, **keys) -> dict:
    """The demo config with one figure of this kind, holding only what the kind needs."""
    k = figure_kinds.KINDS[kind]
    block = {"kind": kind, "title": "t", **GRID}
    if kind == "examples":
        block = {"kind": kind, "title": "t", "dataset": "digits", "classes": [0], "columns": {"original": {}}}
    if k.source == "victims":
        block["recipe"] = "digits_cnn_traced" if kind == "loss_trace" else "digits_cnn"
    if "filter" in k.required:
        block["filter"] = "trusted"
    cfg = copy.deepcopy(demo())
    cfg["figures"], cfg["claims"] = {"f": {**block, **keys}}, {}
    return load_config_dict(cfg)


def victims_table() -> pd.DataFrame:
    """The table of a figure without series (empty labels, read back as NaN): two seeds at 0, 1 and 1 hits of 4."""
    rows = []
    for seed, hits in enumerate([0, 4, 4]):
        rows.append({"series": np.nan, "dataset": "digits", "attack": "gu", "recipe": "digits_cnn", "defence": "none",
                     "target": 0, "target_name": "0", "amount": "n4", "rate": np.nan, "count": 4,
                     "fraction_of_train": 0.003, "seed": seed, "clean_accuracy": 0.9, "clean_accuracy_hits": 9,
                     "clean_accuracy_n": 10, "asr_labelled": hits / 4, "asr_labelled_hits": hits,
                     "asr_labelled_n": 4})
    return pd.DataFrame(rows)


def tiny_data(path) -> Dataset:
    """A prepared 8x8 two-class dataset on disk."""
    rng = np.random.default_rng(0)
    ds = Dataset(rng.integers(0, 255, (40, 8, 8, 1), dtype=np.uint8), np.arange(40) % 2,
                 rng.integers(0, 255, (10, 8, 8, 1), dtype=np.uint8), np.arange(10) % 2, ("0", "1"))
    save_prepared(path, ds)
    return ds


def draw(kind: str, cfg: dict, tmp_path) -> None:
    """Draw the figure `f` of the config as its plot rule would, from synthetic inputs."""
    labels, out = figure_kinds.figure_labels(cfg, "f"), tmp_path / "f.png"
    if kind == "asr_heatmap":
        plots.asr_heatmap(victims_table(), "asr_labelled", "t", out, labels)
    elif kind in ("asr_lines", "per_class_lines"):
        plots.asr_lines(victims_table(), ["asr_labelled", "clean_accuracy"], "t", out, labels)
    elif kind == "defence_heatmap":
        plots.defence_heatmap(victims_table(), "asr_labelled", ["none"], "t", out, tmp_path / "f.md", labels)
    elif kind == "loss_trace":
        q = {"q25": 0.1, "median": 0.5, "q75": 0.9}
        logs = [{"loss_trace": [{"step": s, "poisoned": q, "all": q} for s in range(4)],
                 "poison": {"target": 0, "count": 4}}]
        plots.loss_trace(logs, {0: "0"}, "t", out)
    elif kind == "tsne":
        rng = np.random.default_rng(0)
        plots.tsne_panels([(rng.normal(size=(20, 2)), np.arange(20) < 5)], ["BadNets"], ["0"], "t", out)
    elif kind == "filtering":
        scores = [{"probability": np.linspace(0, 1, 40), "poisoned": np.arange(40) < 4}]
        plots.filtering_curve(scores, plots.display_series([""], ["gu"], labels), "t", out)
    elif kind == "filtered_examples":
        tiny_data(tmp_path / "d.npz")
        attack, trigger = cfg["attacks"]["gu"], cfg["triggers"]["gu"]
        write_poison_set(str(tmp_path / "d.npz"), str(tmp_path / "p.npz"), attack, trigger, 0, "n4", 0)
        save_npz(tmp_path / "s.npz", probability=np.linspace(0, 1, 40), poisoned=np.arange(40) < 4,
                 labels=np.arange(40) % 2)
        galleries.filtered_examples(str(tmp_path / "d.npz"), [str(tmp_path / "s.npz")], [str(tmp_path / "p.npz")],
                                    [Poisoned("digits", "gu", 0, "n4", 0)], cfg["attacks"],
                                    plots.display_series([""], ["gu"], labels), 3, "t", out)
    else:
        tiny_data(tmp_path / "d.npz")
        galleries.examples(str(tmp_path / "d.npz"), {}, [("original", {})], [0], 1, None, {}, "t", out)
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("kind", list(figure_kinds.KINDS))
def test_each_kind_draws_from_its_minimal_config(kind, tmp_path):
    cfg = minimal(kind)
    check_references(cfg)
    draw(kind, cfg, tmp_path)


@pytest.mark.parametrize("kind, keys, key", [
    ("loss_trace", {"recipe": "digits_cnn"}, "recipes.digits_cnn.trace_per_epoch"),
    ("asr_heatmap", {"metric": ["asr_labelled", "clean_accuracy"]}, "figures.f.metric"),
    ("defence_heatmap", {"metric": "der"}, "figures.f.metric"),
    ("filtering", {"recipe": "digits_cnn"}, "figures.f.recipe"),
    ("examples", {"attack": "gu"}, "figures.f.attack"),
])
def test_a_minimal_figure_that_cannot_draw_is_refused_in_one_line_naming_the_key(kind, keys, key):
    with pytest.raises(ConfigError) as err:
        check_references(minimal(kind, **keys))
    assert f"config key '{key}'" in str(err.value) and "\n" not in str(err.value)


def test_display_names_default_to_the_methods_and_a_label_key_wins():
    cfg = minimal("defence_heatmap", defences=["none", "adv", "dp_0", "dp_1"],
                  series={"noise": {"attack": "gu", "label": "BadNets, 4 images"}})
    cfg["defences"]["adv"]["label"] = "PGD training"
    for dp in ("dp_0", "dp_1"):  # the demo names them; unnamed, two blocks of one method show their keys
        cfg["defences"][dp].pop("label")
    labels = figure_kinds.figure_labels(cfg, "f")
    assert labels["series"] == {"noise": "BadNets, 4 images"} and labels["attack"] == {"gu": "BadNets"}
    assert labels["classes"] == {"digits": 10}
    assert labels["defence"] == {"none": "no defence", "adv": "PGD training", "dp_0": "DP-SGD (dp_0)",
                                 "dp_1": "DP-SGD (dp_1)"}
