"""Both attack-success-rate definitions of thesis 2.1.1 on hand-made predictions; the fit to the training set and
the losses with their spread (the 003 seed's table) on a hand-made model."""
import numpy as np
import pytest
import torch

from pipeline_lib.evaluate import attack_metrics
from pipeline_lib.fit import mean_with_se, training_fit
from pipeline_lib.train import median_se

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


class FixedLogits(torch.nn.Module):
    """A model whose logits are [0, log 3, 0] for every image: class 1 with probability 3/5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([0.0, np.log(3.0), 0.0]).expand(len(x), 3)


def test_the_fit_to_the_training_set_is_its_accuracy_and_mean_cross_entropy_with_their_spread():
    x, y = np.zeros((4, 2, 2, 1), np.uint8), np.array([1, 1, 1, 0])
    fit = training_fit(FixedLogits(), x, y, torch.device("cpu"))
    losses = np.array([np.log(5 / 3)] * 3 + [np.log(5)])          # -log p(label): p = 3/5 for class 1, 1/5 else
    assert (fit["train_accuracy"], fit["train_accuracy_hits"], fit["train_accuracy_n"]) == (0.75, 3, 4)
    assert fit["train_loss"] == pytest.approx(losses.mean(), rel=1e-6)   # float32 logits of log 3
    assert fit["train_loss_se"] == pytest.approx(losses.std(ddof=1) / 2, rel=1e-6)


def test_a_mean_of_no_images_is_nan_and_of_one_has_no_standard_error():
    assert all(np.isnan(v) for v in mean_with_se("test_loss", np.zeros(0)).values())
    one = mean_with_se("test_loss", np.array([0.5]))
    assert one["test_loss"] == 0.5 and np.isnan(one["test_loss_se"])


def test_a_median_loss_carries_the_spread_of_its_order_statistics():
    values = torch.arange(1, 10001, dtype=torch.float64)                 # the median's 95% ranks: 5000 -+ 98
    assert median_se(values) == pytest.approx(196 / (2 * 1.96), abs=0.3)
    assert median_se(torch.full((100,), 2.0)) == 0.0
