"""Both attack-success-rate definitions of thesis 2.1.1, on hand-made predictions."""
import numpy as np
import pytest

from pipeline_lib.evaluate import attack_metrics

TARGET = 0
Y = np.array([0, 0, 1, 1, 2, 2])
CLEAN = np.array([0, 1, 1, 0, 2, 2])       # one target image missed, one image of class 1 called 0
TRIGGERED = np.array([0, 0, 0, 0, 2, 0])


def test_first_asr_excludes_images_labelled_as_the_target():
    m = attack_metrics(Y, CLEAN, TRIGGERED, TARGET, 3)
    assert m["asr_labelled"] == pytest.approx(3 / 4)  # labels 1, 1, 2, 2 -> triggered 0, 0, 2, 0


def test_second_asr_excludes_images_already_classified_as_the_target():
    m = attack_metrics(Y, CLEAN, TRIGGERED, TARGET, 3)
    assert m["asr_classified"] == pytest.approx(3 / 4)  # clean preds != 0 at 1, 2, 4, 5 -> 0, 0, 2, 0
    m = attack_metrics(Y, CLEAN, np.array([1, 1, 1, 0, 2, 2]), TARGET, 3)
    assert m["asr_labelled"] == pytest.approx(1 / 4) and m["asr_classified"] == 0.0


def test_clean_robust_per_class_and_target_class_accuracy():
    m = attack_metrics(Y, CLEAN, TRIGGERED, TARGET, 3)
    assert m["clean_accuracy"] == pytest.approx(4 / 6)
    assert m["robust_accuracy"] == pytest.approx(1 / 4)
    assert m["per_class_accuracy"] == [0.5, 0.5, 1.0]
    assert m["target_accuracy"] == 0.5 and attack_metrics(Y, CLEAN, TRIGGERED, 2, 3)["target_accuracy"] == 1.0


def test_every_rate_records_the_test_images_it_was_measured_on():
    m = attack_metrics(Y, CLEAN, TRIGGERED, TARGET, 3)
    assert (m["clean_accuracy_hits"], m["clean_accuracy_n"]) == (4, 6)
    assert (m["asr_labelled_hits"], m["asr_labelled_n"]) == (3, 4)
    assert (m["robust_accuracy_hits"], m["robust_accuracy_n"]) == (1, 4)
    assert (m["target_accuracy_hits"], m["target_accuracy_n"]) == (1, 2)
    for rate in ("clean_accuracy", "asr_labelled", "asr_classified", "robust_accuracy", "target_accuracy"):
        assert m[rate] == m[f"{rate}_hits"] / m[f"{rate}_n"]
