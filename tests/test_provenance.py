"""A rule's code version covers the library modules it runs, and only those."""
from pipeline_lib.provenance import closure, code_version


def test_closure_follows_in_package_imports():
    assert {"train", "models", "attacks", "triggers", "data", "artifacts", "devices"} <= set(closure("train"))
    assert "train" in closure("evaluate")  # evaluation follows training, so training code counts
    assert "evaluate" not in closure("train")  # but a new metric does not retrain victims
    assert "train" not in closure("attacks") and "attacks" not in closure("data")


def test_code_version_is_stable_and_distinguishes_rules():
    assert code_version("attacks") == code_version("attacks")
    assert code_version("attacks") != code_version("plots")
