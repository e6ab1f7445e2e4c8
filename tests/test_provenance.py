"""A rule's code version covers the library modules it runs, and only those."""
from pipeline_lib.provenance import closure, code_version


def test_closure_follows_in_package_imports():
    assert {"train", "defences", "models", "attacks", "triggers", "data", "artifacts", "devices"} <= set(
        closure("victims"))
    assert "models" in closure("evaluate") and "evaluate" not in closure("victims")  # a new metric retrains nothing
    assert "defences" not in closure("surrogates")  # a defence edit retrains no surrogate
    assert {"adversarial", "train"} <= set(closure("surrogates"))  # PGD training code counts for surrogates ...
    assert not {"gan", "evaluate", "perturb"} & set(closure("surrogates"))  # ... GAN or metric code does not
    assert "gan" in closure("perturb") and "train" not in closure("perturb")
    assert "train" not in closure("attacks") and "attacks" not in closure("data")
    assert "trigger_nets" in closure("attacks") and "input_aware" not in closure("attacks")  # poisons use, not train, them


def test_code_version_changes_with_the_source_of_its_closure_only(tmp_path, monkeypatch):
    import shutil

    from pipeline_lib import provenance

    copy = tmp_path / "pipeline_lib"
    shutil.copytree(provenance.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_DIR", copy)
    provenance._local_imports.cache_clear()
    before = {m: code_version(m) for m in ("perturb", "attacks")}
    assert before["perturb"] != before["attacks"]
    with open(copy / "gan.py", "a") as f:   # imported by perturb (GAN interpolation), not by attacks
        f.write("\n# an edit\n")
    assert code_version("perturb") != before["perturb"] and code_version("attacks") == before["attacks"]
    provenance._local_imports.cache_clear()
