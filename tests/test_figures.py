"""Defence figures: attack x defence means in the configured order, as a heatmap and a markdown table."""
import numpy as np
import pandas as pd

from pipeline_lib.plots import defence_heatmap, defence_means, defence_summary, tsne_panels


def victims():
    rows = []
    for attack, series in (("gu", "BadNets"), ("sig", "SIG")):
        for defence, asr, eps in (("none", 1.0, np.nan), ("dp_1", 0.1, 3.5), ("abl", 0.4, np.nan)):
            for seed in (0, 1):
                rows.append({"series": series, "attack": attack, "defence": defence, "seed": seed,
                             "clean_accuracy": 0.9 + 0.01 * seed, "asr_labelled": asr, "epsilon": eps,
                             "isolation_precision": 0.5 if defence == "abl" else np.nan})
    return pd.DataFrame(rows)


def test_summary_averages_seeds_and_keeps_the_configured_defence_order():
    out = defence_summary(defence_means(victims(), ["none", "dp_1", "abl"]))
    assert out["attack"].tolist() == ["BadNets"] * 3 + ["SIG"] * 3
    assert out["defence"].astype(str).tolist()[:3] == ["none", "dp_1", "abl"]
    first = out.iloc[1]
    assert first["clean accuracy"] == 90.5 and first["ASR"] == 10.0 and first["epsilon"] == 3.5
    assert out.iloc[2]["isolation precision"] == 50.0


def test_defence_heatmap_writes_the_figure_and_a_markdown_table(tmp_path):
    defence_heatmap(victims(), ["clean_accuracy", "asr_labelled"], ["none", "dp_1", "abl"], "grid",
                    tmp_path / "f.png", tmp_path / "f.md")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "f.md").read_text().splitlines()
    assert table[0] == "# grid" and "| attack" in table[2] and "nan" not in "".join(table)
    assert len(table) == 4 + 6  # title, blank, header, rule, then 2 attacks x 3 defences


def test_tsne_panels_draw_one_panel_per_victim(tmp_path):
    rng = np.random.default_rng(0)
    maps = [(rng.normal(size=(20, 2)), np.arange(20) < 5) for _ in range(2)]
    tsne_panels(maps, ["none", "adv"], "zero", "t-SNE", tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
