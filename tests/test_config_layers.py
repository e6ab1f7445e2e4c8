"""A config's `include:` layers (config/methods/, config/claims/): how they merge, what they refuse, and that the
shipped configs write each method block once."""
import json

import pytest
from snakemake.utils import update_config

from conftest import ROOT, raw_config
from pipeline_lib.config import ConfigError, load_yaml, read_config, resolve_includes

PRESETS = ["config.yaml", "config/demo.yaml", "config/leaderboard.yaml", "config/shared_subsets.yaml"]


def write(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).write_text(text)


def refusal(tmp_path) -> str:
    with pytest.raises(ConfigError) as e:
        read_config(tmp_path / "top.yaml", tmp_path)
    return str(e.value)


def test_included_files_merge_under_the_including_one_key_by_key(tmp_path):
    write(tmp_path, {
        "base.yaml": "recipes:\n  cnn: {epochs: 6, lr: 0.05, milestones: [4]}\nattacks:\n  gu: {method: badnets}\n",
        "more.yaml": "include: [base.yaml]\nrecipes:\n  cnn: {epochs: 8}\n  big: {epochs: 99}\n",
        "top.yaml": "include: [more.yaml]\ntrain_threads: 2\nrecipes:\n  cnn: {milestones: [2]}\n"
                    "attacks:\n  sig: {method: label_consistent}\n"})
    cfg = read_config(tmp_path / "top.yaml", tmp_path)
    assert cfg == {"recipes": {"cnn": {"epochs": 8, "lr": 0.05, "milestones": [2]},   # the nearest file wins each key,
                               "big": {"epochs": 99}},                               # a list is replaced whole
                   "attacks": {"gu": {"method": "badnets"}, "sig": {"method": "label_consistent"}},
                   "train_threads": 2}   # and `include` is gone: the resolved config stands alone
    assert list(cfg["attacks"]) == ["gu", "sig"]   # the layers' entries first, in include order


def test_a_config_override_wins_over_every_layer(tmp_path):
    write(tmp_path, {"base.yaml": "recipes:\n  cnn: {epochs: 6, lr: 0.05}\n",
                     "top.yaml": "include: [base.yaml]\nrecipes:\n  cnn: {epochs: 8}\n"})
    cfg = load_yaml(tmp_path / "top.yaml")
    update_config(cfg, {"recipes": {"cnn": {"lr": 0.5}}})   # a --config override, as Snakemake applies it
    resolve_includes(cfg, tmp_path, tmp_path / "top.yaml")
    assert cfg == {"recipes": {"cnn": {"epochs": 8, "lr": 0.5}}}


def test_an_entry_two_included_files_define_is_refused_naming_both(tmp_path):
    write(tmp_path, {"a.yaml": "claims:\n  c1: {statement: a}\n", "b.yaml": "claims:\n  c1: {statement: b}\n",
                     "top.yaml": "include: [a.yaml, b.yaml]\n"})
    assert refusal(tmp_path) == (f"config key 'claims.c1': defined by both a.yaml and b.yaml (both included by "
                                 f"{tmp_path / 'top.yaml'}); define it in one of them")


def test_one_file_reached_twice_is_no_conflict(tmp_path):
    write(tmp_path, {"common.yaml": "attacks:\n  gu: {method: badnets}\n",
                     "a.yaml": "include: [common.yaml]\n", "b.yaml": "include: [common.yaml]\n",
                     "top.yaml": "include: [a.yaml, b.yaml]\n"})
    assert read_config(tmp_path / "top.yaml", tmp_path) == {"attacks": {"gu": {"method": "badnets"}}}


def test_an_include_cycle_is_refused_by_name(tmp_path):
    write(tmp_path, {"a.yaml": "include: [b.yaml]\n", "b.yaml": "include: [a.yaml]\n",
                     "top.yaml": "include: [a.yaml]\n"})
    assert refusal(tmp_path) == (f"b.yaml: config key 'include': a cycle, {tmp_path / 'top.yaml'} -> a.yaml -> b.yaml "
                                 "-> a.yaml")


def test_an_included_file_is_read_strictly_naming_its_file_and_line(tmp_path):
    write(tmp_path, {"claims.yaml": "claims:\n  c1: {statement: a}\n  c1: {statement: b}\n",
                     "top.yaml": "include: [claims.yaml]\n"})
    assert refusal(tmp_path).startswith(f"{tmp_path / 'claims.yaml'}, line 3: key 'c1' given twice in one block")


@pytest.mark.parametrize("include, message", [
    ("[nope.yaml]", "config key 'include': nope.yaml not found (include paths are relative to the workflow's folder"),
    ("nope.yaml", "config key 'include': a list of config file paths (relative to the workflow's folder), not "
                  "'nope.yaml'"),
])
def test_a_missing_include_is_named(tmp_path, include, message):
    write(tmp_path, {"top.yaml": f"include: {include}\n"})
    assert refusal(tmp_path).startswith(f"{tmp_path / 'top.yaml'}: {message}")


def test_each_shipped_method_block_is_written_once():
    """A block several configs share lives in one config/methods/ file (figures and claims are each config's own)."""
    seen: dict[str, str] = {}
    for path in [ROOT / p for p in PRESETS] + sorted((ROOT / "config/methods").glob("*.yaml")):
        for section, entries in load_yaml(path).items():
            if isinstance(entries, dict) and section not in ("figures", "claims"):
                for name, block in entries.items():
                    key = f"{section}.{name}: {json.dumps(block, sort_keys=True)}"
                    assert key not in seen, f"{key} is written in both {seen[key]} and {path.relative_to(ROOT)}"
                    seen[key] = str(path.relative_to(ROOT))


def test_every_shipped_config_resolves_to_one_that_stands_alone():
    for path in PRESETS:
        cfg = raw_config(path)
        assert "include" not in cfg and cfg["claims"] and cfg["attacks"]["gu"] == {"method": "badnets", "trigger": "gu"}
