"""Defence figures: attack x defence means in the configured order, as a heatmap and a markdown table."""
import numpy as np
import pandas as pd
import pytest

from pipeline_lib.claims import estimate
from pipeline_lib.plots import (asr_lines, defence_heatmap, defence_means, defence_summary, interval, labelled,
                                tsne_panels)


LABELS = {"series": {}, "defence": {"none": "no defence", "dp_1": "DP-SGD", "abl": "ABL"}}


def victims():
    rows = []
    for attack, series, amount in (("gu", "BadNets", {"amount": "n34", "count": 34, "rate": np.nan}),
                                   ("sig", "SIG", {"amount": "p1", "count": 135, "rate": 1.0})):
        for defence, asr, eps in (("none", 1.0, np.nan), ("dp_1", 0.1, 3.5), ("abl", 0.4, np.nan)):
            for seed in (0, 1):
                rows.append({"series": series, "dataset": "digits", "attack": attack, "defence": defence,
                             "target": 0, "target_name": "digit 0", **amount, "fraction_of_train": 0.025,
                             "seed": seed, "clean_accuracy": 0.9 + 0.01 * seed, "asr_labelled": asr,
                             "epsilon": eps, "isolation_precision": 0.5 if defence == "abl" else np.nan})
    return pd.DataFrame(rows)


def test_summary_averages_seeds_keeps_the_configured_defence_order_and_says_dataset_and_amount():
    out = defence_summary(defence_means(victims(), ["none", "dp_1", "abl"], LABELS))
    assert out["attack"].tolist() == ["BadNets"] * 3 + ["SIG"] * 3
    assert out["defence"].astype(str).tolist()[:3] == ["no defence", "DP-SGD", "ABL"]
    assert out["dataset"].iloc[0] == "digits"
    assert out["poisoned"].tolist()[::3] == ["n=34 (2.5% of train)", "100% of the target class (n=135)"]
    first = out.iloc[1]
    assert first["clean accuracy"] == 90.5 and first["ASR"] == 10.0 and first["epsilon"] == 3.5
    assert out.iloc[2]["isolation precision"] == 50.0


def test_defence_heatmap_writes_the_figure_and_a_markdown_table_saying_what_was_measured(tmp_path):
    defence_heatmap(victims(), ["clean_accuracy", "asr_labelled"], ["none", "dp_1", "abl"], "grid",
                    tmp_path / "f.png", tmp_path / "f.md", LABELS)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "f.md").read_text().splitlines()
    assert table[0] == "# grid" and table[2].startswith("digits; target class digit 0; 2 seeds")
    assert "| attack" in table[4] and "| poisoned" in table[4] and "nan" not in "".join(table)
    assert len(table) == 6 + 6  # title, blank, context, blank, header, rule, then 2 attacks x 3 defences


def test_series_keep_the_config_order_and_unnamed_series_show_their_attack():
    df = pd.DataFrame({"series": ["b", "a", np.nan], "attack": ["gu", "gu", "sig"], "defence": "dp_1"})
    out = labelled(df, {"series": {"a": "noise 0", "b": "SGD"}, "attack": {"sig": "SIG"},
                        "defence": {"dp_1": "DP-SGD"}})
    assert out["series"].tolist() == ["noise 0", "SGD", "SIG"] and set(out["defence"]) == {"DP-SGD"}


def test_error_bars_are_the_scorecards_interval_within_0_and_1():
    # three seeds at 0, 1 and 1 of 4 test images: mean +- sd would run from about 9% to above 100%
    rows = pd.DataFrame({"series": "s", "attack": "gu", "target": 0, "amount": "n4", "seed": [0, 1, 2],
                         "asr_labelled": [0.0, 1.0, 1.0], "asr_labelled_hits": [0, 4, 4], "asr_labelled_n": 4})
    mean, low, high = interval(rows, "asr_labelled")
    assert mean == pytest.approx(2 / 3) and 0 <= low < mean < high <= 1
    assert (low, high) == estimate(rows, {"metric": "asr_labelled"}, np.random.default_rng(0)).interval


def test_asr_lines_draws_each_metric_in_its_own_row_and_a_figure_without_series(tmp_path):
    df = victims().assign(series=np.nan, asr_labelled_hits=4, asr_labelled_n=4, clean_accuracy_hits=9,
                          clean_accuracy_n=10)
    asr_lines(df[df["defence"] == "none"], ["asr_labelled", "clean_accuracy"], "lines", tmp_path / "l.png")
    assert (tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG"


def test_tsne_panels_draw_one_panel_per_victim_a_row_per_class(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    maps = [(rng.normal(size=(20, 2)), np.arange(20) < 5) for _ in range(6)]
    tsne_panels(maps[:2], ["none", "adv"], ["zero"] * 2, "t-SNE", tmp_path / "t.png")
    tsne_panels(maps, ["none", "adv"] * 3, ["zero", "zero", "one", "one", "two", "two"], "t-SNE", tmp_path / "c.png")
    one, three = (Image.open(tmp_path / f).size for f in ("t.png", "c.png"))
    assert one[0] == three[0] and three[1] > 2.5 * one[1]   # two columns (none, adv); three classes, three rows
