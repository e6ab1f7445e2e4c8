"""Hostile plug-ins (issue 36, items 6 and 7): a plug-in never overwrites a core metric, and whatever its import
does, planning stops with one line naming it."""
import sys

import numpy as np
import pytest
import yaml

from pipeline_lib import plugins, tables
from pipeline_lib.evaluate import attack_metrics
from test_hostile_inputs import demo_config, plan

DEFENCE = '''
from dataclasses import dataclass
from pipeline_lib.plugins import Defence


@dataclass(frozen=True)
class Config:
    pass


METHODS = [Defence(name={name!r}, summary="hostile", config=Config, fit=lambda job, config: None,
                   measures={measures!r})]
'''

ATTACK = '''
from dataclasses import dataclass
from pipeline_lib.plugins import Attack


@dataclass(frozen=True)
class Config:
    pass


METHODS = [Attack(name={name!r}, summary="hostile", config=Config, select=lambda y, target, n, rng: None)]
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path for plug-in modules; afterwards they are forgotten and the catalogue is the package's."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n, m in sys.modules.items() if str(tmp_path) in (getattr(m, "__file__", None) or "")]:
        del sys.modules[name]
    plugins.use([])


def refused(module: str) -> str:
    """The one-line error using a plug-in module stops with."""
    with pytest.raises(plugins.PluginError) as e:
        plugins.use([module])
    assert "\n" not in str(e.value)
    return str(e.value)


def test_every_key_evaluation_and_the_tables_write_themselves_is_reserved():
    y = np.array([0, 1, 2, 1])
    written = {*attack_metrics(y, y, y, 1, 3), *tables.COLUMNS, *tables.TAIL_COLUMNS}
    assert written <= plugins.RESERVED_MEASURES, written - plugins.RESERVED_MEASURES
    assert not plugins.RESERVED_MEASURES & set(plugins.measures())   # the package's own defences measure none


@pytest.mark.parametrize("measures, message", [
    (("cheat_rate", "clean_accuracy"), "defence 'cheat' measures 'clean_accuracy', a core metric's name"),
    (("asr_labelled_hits",), "defence 'cheat' measures 'asr_labelled_hits', a core metric's name"),
    (("final_loss_all",), "defence 'cheat' measures 'final_loss_all', a core metric's name"),
    (("count",), "defence 'cheat' measures 'count', a core metric's name"),
    ("clean_accuracy", "defence 'cheat' measures 'clean_accuracy', not a tuple of names"),
    (("a,b",), "defence 'cheat' measures ('a,b',), not a tuple of names"),
])
def test_a_defence_measuring_a_core_metric_is_refused_when_its_module_registers(plugin_dir, measures, message):
    (plugin_dir / "cheat.py").write_text(DEFENCE.format(name="cheat", measures=measures))
    assert refused("cheat") == f"method module 'cheat': {message}" + (
        " (a measure adds a metric, never replaces one)" if "core" in message else "")


@pytest.mark.parametrize("code, failure", [
    ("import sys\nsys.exit(0)\n", "SystemExit: the module called sys.exit(0)"),
    ("raise SystemExit('bye')\n", "SystemExit: the module called sys.exit('bye')"),
    ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
    ("raise GeneratorExit\n", "GeneratorExit"),
    ("raise ValueError('first\\nsecond')\n", "ValueError: first"),
])
def test_anything_a_plug_in_raises_at_import_is_one_line_naming_it(plugin_dir, code, failure):
    (plugin_dir / "hostile.py").write_text(code)
    assert refused("hostile") == f"config key 'plugins': cannot import method module 'hostile' ({failure})"


@pytest.mark.parametrize("name", ["../../etc", "a/b", "", "x" * 65, "tab\there", 5])
def test_a_method_name_that_is_no_name_is_refused_naming_its_module(plugin_dir, name):
    (plugin_dir / "badname.py").write_text(ATTACK.format(name=name))
    assert refused("badname") == (f"method module 'badname': attack method name {name!r} is not 1 to 64 letters, "
                                  f"digits or '_'")


@pytest.mark.parametrize("module", ["../evil", "os;rm", "a..b", ".rel", "a b", 5])
def test_plug_in_module_names_are_checked_before_any_is_imported(plugin_dir, module):
    (plugin_dir / "side_effect.py").write_text("open(__file__ + '.ran', 'w').close()\nMETHODS = []\n")
    with pytest.raises(plugins.PluginError) as e:
        plugins.use(["side_effect", module])
    assert str(e.value) == f"config key 'plugins': {module!r} is not a dotted Python module name"
    assert not (plugin_dir / "side_effect.py.ran").exists()   # refused before the good name was imported


def test_a_plug_in_calling_sys_exit_at_import_fails_the_dry_run_with_one_line(plugin_dir, monkeypatch):
    (plugin_dir / "quits.py").write_text("import sys\nsys.exit(0)\n")
    monkeypatch.setenv("PYTHONPATH", str(plugin_dir))
    cfg = demo_config()
    cfg["plugins"] = ["quits"]
    (plugin_dir / "run").mkdir()
    lines = plan(plugin_dir / "run", yaml.safe_dump(cfg, sort_keys=False))
    assert lines == ["invalid config: config key 'plugins': cannot import method module 'quits' (SystemExit: the "
                     "module called sys.exit(0))"], lines


def test_an_attack_or_defence_key_named_label_is_refused_as_the_display_names_key(plugin_dir):
    code = ATTACK.replace("class Config:\n    pass", "class Config:\n    label: int = 0")
    (plugin_dir / "labelled.py").write_text(code.format(name="labelled"))
    assert refused("labelled") == ("method module 'labelled': attack 'labelled' has a key 'label', the display name "
                                   "every attack block may carry; rename the key")
