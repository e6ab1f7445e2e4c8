"""The traps a new user fell into on a first day (issue 35): each now ends in one line that says what to do."""
import pytest
from snakemake.exceptions import WorkflowError

from conftest import load_config_dict
from pipeline_lib import plugins
from pipeline_lib.config import schema_error_line
from test_hostile_inputs import demo_config


def test_a_defence_block_named_none_is_told_none_is_built_in():
    cfg = demo_config()
    cfg["defences"]["none"] = {"method": "spectral", "eps": 0.1}
    with pytest.raises(WorkflowError) as e:
        load_config_dict(cfg)
    assert schema_error_line(e.value.__context__) == (
        "config key 'defences': 'none' is built in (plain training, no defence: a grid's default); give your block "
        "another name")


def test_a_plug_in_python_cannot_find_says_where_python_looks(tmp_path, monkeypatch):
    (tmp_path / "needs_dep.py").write_text("import a_dependency_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(plugins.PluginError) as e:
        plugins.use(["finetune_one"])
    assert str(e.value) == (
        "config key 'plugins': cannot import method module 'finetune_one' (ModuleNotFoundError: No module named "
        "'finetune_one'); Python looks in the project root and on PYTHONPATH: export PYTHONPATH=<its folder> before "
        "snakemake")
    with pytest.raises(plugins.PluginError) as e:  # found, but its own import fails: no advice on the path
        plugins.use(["needs_dep"])
    assert str(e.value).endswith("(ModuleNotFoundError: No module named 'a_dependency_not_installed')")


def test_a_display_label_is_no_key_of_the_method():
    method, settings = plugins.settings("defence", {"method": "spectral", "eps": 0.1, "label": "spectral signatures"})
    assert method.name == "spectral" and settings.eps == 0.1


def test_a_finished_run_ends_saying_where_its_figures_scorecard_and_report_are():
    from pipeline_lib import layout

    try:
        layout.use_results("results/demo")
        assert layout.orientation(["config/demo.yaml"], claims=True).splitlines() == [
            "Figures: results/demo/figures/ (one PNG each); their tables: results/demo/tables/ (every victim: "
            "results/demo/tables/all_victims.csv).",
            "Which claims held: results/demo/tables/scorecard.md (drawn: results/demo/figures/scorecard.png).",
            "Every figure with its caption in one HTML page: snakemake --configfile config/demo.yaml --report "
            "results/demo/report.html"]
    finally:
        layout.use_results("results")
    assert "claims" not in layout.orientation([], claims=False)


def test_two_blocks_a_figure_would_print_alike_are_refused_at_planning():
    from pipeline_lib.config import ConfigError, check_references

    cfg = load_config_dict(demo_config())
    plugins.use(cfg["plugins"])
    check_references(cfg)  # the demo's own names are distinct
    cfg["defences"]["abl"]["label"] = "adversarial training"
    with pytest.raises(ConfigError) as e:
        check_references(cfg)
    assert str(e.value) == ("config key 'defences.abl.label': defence 'abl' prints as 'adversarial training' in figure "
                            "'defence-grid', as defence 'adv' does; give one of them another label")


def test_two_config_files_that_both_list_layers_are_refused_instead_of_dropping_one(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    (tmp_path / "mine.yaml").write_text("include: [config/methods/common.yaml]\n")
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                        "--configfile", str(tmp_path / "mine.yaml"), str(ROOT / "config/demo.yaml"), "-n"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and r.stderr.splitlines()[-1] == (
        f"invalid config: {tmp_path}/mine.yaml and {ROOT}/config/demo.yaml both list `include`, and Snakemake keeps "
        "only the last list; list every layer in one file")


def test_a_config_built_on_a_preset_writes_to_its_own_folder_not_the_presets():
    from pipeline_lib.config import default_results

    assert default_results("config/demo.yaml") == "results/demo"
    assert default_results("/home/me/my data.v2.yaml") == "results/my_data.v2"
    assert default_results(None) == "results"
