"""The input-aware dynamic backdoor: sparse masks, input-dependent triggers, a learned backdoor."""
import numpy as np
import torch

from pipeline_lib.data import load_source
from pipeline_lib.input_aware import (DynamicRecipe, DynamicTrigger, TriggerNet, apply_trigger, diversity,
                                      train_input_aware)
from pipeline_lib.models import predict
from pipeline_lib.train import Recipe


def test_diversity_is_the_mean_ratio_of_image_to_trigger_distance():
    x1, x2 = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    t1, t2 = torch.zeros(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.5)
    assert abs(diversity(x1, x2, t1, t2).item() - 2.0) < 1e-5  # rms 1 over rms 0.5 (+1e-7)


def test_a_zero_mask_leaves_the_image_and_a_full_mask_replaces_it():
    torch.manual_seed(0)
    g, m = TriggerNet(1, 1, 4), TriggerNet(1, 1, 4)
    x = torch.rand(3, 1, 8, 8)
    for p in m.parameters():
        torch.nn.init.zeros_(p)
    m.net[-1].bias.data.fill_(-5.0)  # mask ~ 0
    assert torch.allclose(apply_trigger(g, m, x), x, atol=1e-6)
    m.net[-1].bias.data.fill_(5.0)   # mask ~ 1: the generator's pattern
    assert torch.allclose(apply_trigger(g, m, x), (torch.tanh(g(x)) + 1) / 2, atol=1e-6)


def test_on_digits_the_attack_learns_a_backdoor_with_sparse_input_specific_triggers(tmp_path):
    torch.set_num_threads(1)
    ds = load_source("digits", ".")
    recipe = Recipe(model="small_cnn", epochs=10, batch_size=64, lr=0.05, model_options={"width": 8})
    spec = DynamicRecipe(mask_epochs=3, width=8, p_attack=0.2)  # measured: ASR 86%, clean 96%, 7% of pixels
    model, g, m, info = train_input_aware(ds.x_train, ds.y_train, 10, 0, recipe, spec, 0, torch.device("cpu"))
    trigger = DynamicTrigger(g, m)
    trigger.save(str(tmp_path / "t.pt"), 1, 8)
    loaded = DynamicTrigger.load(str(tmp_path / "t.pt"))
    others = ds.x_test[ds.y_test != 0]
    triggered = loaded.apply(others)
    assert (triggered == trigger.apply(others)).all()
    asr = (predict(model, triggered, torch.device("cpu")) == 0).mean()
    clean = (predict(model, ds.x_test, torch.device("cpu")) == ds.y_test).mean()
    assert asr > 0.8 and clean > 0.8, (asr, clean)
    changed = (triggered != others).any(-1).mean(axis=(1, 2))
    assert changed.mean() < 0.2  # sparse masks: most pixels untouched
    assert (triggered[0] != triggered[1]).any()
