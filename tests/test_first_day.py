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

    assert layout.orientation(["config/demo.yaml"], claims=True).splitlines() == [
        f"Figures: {layout.RESULTS}/figures/ (one PNG each); their tables: {layout.RESULTS}/tables/ (every victim: "
        f"{layout.RESULTS}/tables/all_victims.csv).",
        f"Which claims held: {layout.RESULTS}/tables/scorecard.md (drawn: {layout.RESULTS}/figures/scorecard.png).",
        f"Every figure with its caption in one HTML page: snakemake --configfile config/demo.yaml --report "
        f"{layout.RESULTS}/report.html"]
    assert "claims" not in layout.orientation([], claims=False)
