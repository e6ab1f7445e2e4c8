"""A rule's code version covers the library modules it runs, and only those."""
from pipeline_lib.provenance import closure, code_version


def test_closure_follows_in_package_imports():
    assert {"train", "models", "poisons", "triggers", "plugins", "data", "artifacts", "devices"} <= set(
        closure("victims"))
    assert "models" in closure("evaluate") and "evaluate" not in closure("victims")  # a new metric retrains nothing
    assert not any(m.startswith("defences") for m in closure("surrogates"))  # a defence edit retrains no surrogate
    assert {"adversarial", "train"} <= set(closure("surrogates"))  # PGD training code counts for surrogates ...
    assert not {"gan", "evaluate", "perturb"} & set(closure("surrogates"))  # ... GAN or metric code does not
    assert "gan" in closure("perturb") and "train" not in closure("perturb")
    assert "train" not in closure("poisons") and "poisons" not in closure("data")
    assert "trigger_nets" in closure("poisons") and "input_aware" not in closure("poisons")  # used, not trained


def test_a_method_module_brings_its_own_imports_including_those_inside_functions():
    assert {"defences", "train", "models", "plugins", "blocks"} <= set(closure("defences.abl"))
    assert "privacy" in closure("defences.dp_sgd") and "privacy" not in closure("defences.abl")
    assert {"triggers", "triggers.patch"} <= set(closure("pipeline_lib.triggers.patch"))


def test_code_version_changes_with_the_source_of_its_closure_only(tmp_path, monkeypatch):
    import shutil

    from pipeline_lib import provenance

    copy = tmp_path / "pipeline_lib"
    shutil.copytree(provenance.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_DIR", copy)
    provenance._local_imports.cache_clear()
    provenance.code_version.cache_clear()
    before = {m: code_version(m) for m in ("perturb", "poisons", "defences.abl", "defences.spectral")}
    assert before["perturb"] != before["poisons"]
    with open(copy / "gan.py", "a") as f:   # imported by perturb (GAN interpolation), not by poisons
        f.write("\n# an edit\n")
    with open(copy / "defences" / "abl.py", "a") as f:  # one defence's module: the others keep their version
        f.write("\n# an edit\n")
    provenance.code_version.cache_clear()
    assert code_version("perturb") != before["perturb"] and code_version("poisons") == before["poisons"]
    assert code_version("defences.abl") != before["defences.abl"]
    assert code_version("defences.spectral") == before["defences.spectral"]
    provenance._local_imports.cache_clear()
    provenance.code_version.cache_clear()


def test_a_plug_in_module_outside_the_package_counts_with_its_file_and_its_package_imports(tmp_path, monkeypatch):
    from pipeline_lib import provenance

    (tmp_path / "my_methods.py").write_text("from pipeline_lib.attacks import select\nMETHODS = []\n")
    assert "attacks" in provenance._imports_of(tmp_path / "my_methods.py", None)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_version("victims", "my_methods")
    code_version.cache_clear()
    (tmp_path / "my_methods.py").write_text("METHODS = []  # edited\n")
    assert code_version("victims", "my_methods") != before
    code_version.cache_clear()
