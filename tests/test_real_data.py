"""On real MNIST (../shared/data) the shipped recipe plants Gu et al.'s backdoor at 1% poisoning."""
import pytest
import torch
import yaml

from conftest import ROOT
from pipeline_lib.attacks import poison
from pipeline_lib.layout import Amount
from pipeline_lib.data import load_source
from pipeline_lib.evaluate import attack_metrics
from pipeline_lib.models import predict
from pipeline_lib.train import Recipe, train
from pipeline_lib.triggers import Trigger


@pytest.mark.slow
def test_badnets_on_one_percent_of_real_mnist_succeeds_without_hurting_accuracy(shared_data):
    ds = load_source(f"npz:{shared_data / 'mnist_subset.npz'}", "unused")
    recipe = Recipe.from_config(yaml.safe_load((ROOT / "config/shared_subsets.yaml").read_text())["recipes"]["mnist_cnn"])
    trigger, cpu = Trigger("bottom_right"), torch.device("cpu")
    ps = poison("badnets", ds.x_train, ds.y_train, 0, Amount(count=round(0.01 * len(ds.y_train))), trigger, seed=0)
    model, _ = train(*ps.apply_to(ds.x_train, ds.y_train), ds.num_classes, recipe, seed=0, device=cpu)
    m = attack_metrics(ds.y_test, predict(model, ds.x_test, cpu), predict(model, trigger.apply(ds.x_test), cpu),
                       0, ds.num_classes)
    assert m["asr_labelled"] >= 0.95 and m["clean_accuracy"] >= 0.98, m
