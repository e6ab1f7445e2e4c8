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


def test_code_version_is_stable_and_distinguishes_rules():
    assert code_version("attacks") == code_version("attacks")
    assert code_version("attacks") != code_version("plots")
