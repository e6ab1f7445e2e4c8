"""Figure grids expand into the victims they need; wrong references are named."""
import pytest
import yaml

from conftest import ROOT
from pipeline_lib.config import ConfigError, check_references, figure_victims


def full_config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_full_config_plans_ten_targets_by_five_amounts_per_figure():
    cfg = full_config()
    for fig in ("fig2-1", "fig3-2"):
        victims = figure_victims(cfg, fig)
        assert len(victims) == 50 and {v.target for v in victims} == set(range(10))
    assert {v.amount for v in figure_victims(cfg, "fig2-1")} == {"n20", "n75", "n300", "n1250", "n5000"}
    assert str(figure_victims(cfg, "fig3-2")[0].path) == \
        "results/victims/cifar10/gu_label_consistent/thesis_resnet/none/t0-p0.004-s0"


def test_unknown_names_and_classes_are_reported_by_key():
    cfg = full_config()
    cfg["figures"]["fig2-1"]["attack"] = "sleeper"
    with pytest.raises(ConfigError, match="figures.fig2-1.attack': unknown attack 'sleeper'"):
        check_references(cfg)
    cfg = full_config()
    cfg["figures"]["fig2-1"]["targets"] = [3, 12]
    with pytest.raises(ConfigError, match="class 12 does not exist"):
        check_references(cfg)
