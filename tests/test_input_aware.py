"""The input-aware dynamic backdoor: sparse masks, input-dependent triggers, a learned backdoor."""
import numpy as np
import pytest
import torch

from pipeline_lib.poisons import load_trigger, poison
from pipeline_lib.layout import Amount
from pipeline_lib.data import load_source
from pipeline_lib.input_aware import DynamicRecipe, diversity, train_input_aware
from pipeline_lib.trigger_nets import DynamicTrigger, TriggerNet, apply_trigger, mask
from pipeline_lib.triggers import make_trigger
from pipeline_lib.models import predict
from pipeline_lib.train import Recipe


def test_diversity_is_the_mean_ratio_of_image_to_trigger_distance():
    x1, x2 = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    t1, t2 = torch.zeros(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.5)
    assert abs(diversity(x1, x2, t1, t2).item() - 2.0) < 1e-5  # rms 1 over rms 0.5 (+1e-7)


def test_the_trigger_networks_have_the_authors_shape_and_an_untrained_mask_is_near_zero():
    g, m = DynamicRecipe().networks(3, 32)  # colour: three levels of 32-64-128 channels
    convs = [layer.out_channels for layer in g.net if isinstance(layer, torch.nn.Conv2d)]
    assert convs == [32, 32, 64, 64, 128, 128, 128, 128, 64, 64, 32, 32, 3]
    assert DynamicRecipe().networks(1, 28)[0].levels == 2 and DynamicRecipe().networks(1, 28)[0].net[0].out_channels == 16
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 1, 32, 32)
    with torch.no_grad():
        for p in m.parameters():
            torch.nn.init.zeros_(p)
        assert mask(m.eval(), torch.rand(2, 3, 32, 32)).max() < 1e-8  # tanh(20 * 0 - 10): the shifted activation
    with pytest.raises(ValueError, match="images of 12 pixels do not halve 3 times"):
        DynamicRecipe().networks(3, 12)


def test_a_zero_mask_leaves_the_image_and_a_full_mask_replaces_it():
    torch.manual_seed(0)
    g, m = TriggerNet(1, 1, 4, 2), TriggerNet(1, 1, 4, 2)
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
    spec = DynamicRecipe(mask_epochs=3, width=8, p_attack=0.2)  # measured: ASR 89%, clean 96%
    model, g, m, info = train_input_aware(ds.x_train, ds.y_train, 10, 0, recipe, spec, 0, torch.device("cpu"))
    trigger = DynamicTrigger(g, m)
    trigger.save(str(tmp_path / "t.pt"))
    loaded = DynamicTrigger.load(str(tmp_path / "t.pt"))
    others = ds.x_test[ds.y_test != 0]
    triggered = loaded.apply(others)
    assert (triggered == trigger.apply(others)).all()
    asr = (predict(model, triggered, torch.device("cpu")) == 0).mean()
    untriggered = (predict(model, others, torch.device("cpu")) == 0).mean()
    clean = (predict(model, ds.x_test, torch.device("cpu")) == ds.y_test).mean()
    # margins, not one machine's outcome: float order differs between CPUs and so does the trained model
    assert clean > 0.8 and asr > 0.5 and asr > 10 * untriggered, (asr, untriggered, clean)
    changed = (triggered != others).any(-1).mean(axis=(1, 2))
    assert changed.mean() < 0.2  # sparse masks: most pixels untouched
    assert (triggered[0] != triggered[1]).any()


def untrained_trigger(seed: int = 0) -> DynamicTrigger:
    """Random networks whose batch-norm statistics come from one random batch, so that their outputs vary with
    the image (about a third of the mask is on: standardised outputs above 0.5)."""
    torch.manual_seed(seed)
    nets = TriggerNet(1, 1, 4, 2), TriggerNet(1, 1, 4, 2)
    for net in nets:
        for layer in net.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.momentum = None  # running statistics = the mean over batches seen: here one
        net(torch.rand(64, 1, 8, 8))
    return DynamicTrigger(*nets)


def test_poisoning_gives_random_images_their_own_trigger_and_the_target_label():
    y = np.repeat(np.arange(10), 20)
    x = np.random.default_rng(0).integers(0, 256, (200, 8, 8, 1), dtype=np.uint8)
    trigger = untrained_trigger()
    ps = poison("input_aware", x, y, 3, Amount(count=40), trigger, seed=0)
    assert (ps.labels == 3).all() and len(np.unique(y[ps.indices])) > 5
    assert np.array_equal(ps.images, trigger.apply(x[ps.indices])) and np.array_equal(ps.untriggered, x[ps.indices])
    badnets = poison("badnets", x, y, 3, Amount(count=40), make_trigger("bottom_right"), seed=0)
    assert np.array_equal(ps.indices, badnets.indices)  # the same images as BadNets with the same seed


def test_an_attack_loads_its_trained_networks_or_builds_its_fixed_pattern(tmp_path):
    trigger = untrained_trigger()
    trigger.save(str(tmp_path / "trigger.pt"))
    x = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    assert np.array_equal(load_trigger({}, str(tmp_path / "trigger.pt")).apply(x), trigger.apply(x))
    assert load_trigger({"pattern": "sig", "amplitude": 30}) == make_trigger("sig", amplitude=30)


def test_a_cross_trigger_is_the_trigger_drawn_for_the_source_image():
    trigger = untrained_trigger()
    x = np.random.default_rng(2).integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    own, crossed = trigger.apply(x), trigger.apply(x, sources=x[::-1])
    assert (own != crossed).any()
    assert np.array_equal(trigger.apply(x, sources=x), own)
    with torch.no_grad():
        by_hand = apply_trigger(trigger.g, trigger.m, torch.from_numpy(x[:1]).permute(0, 3, 1, 2) / 255,
                                source=torch.from_numpy(x[-1:]).permute(0, 3, 1, 2) / 255)
    assert np.array_equal(crossed[0, ..., 0], by_hand.clamp(0, 1).mul(255).round()[0, 0].to(torch.uint8).numpy())


@pytest.mark.parametrize("block, message", [({"p_attack": 0.6, "p_cross": 0.5}, "exceed the whole batch"),
                                            ({"lambda": 1.0}, "not a key of input-aware")])
def test_bad_attack_settings_are_refused_by_name(block, message):
    with pytest.raises(ValueError, match=message):
        DynamicRecipe.from_config(block)
