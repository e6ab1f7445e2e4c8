"""The hot loops a GPU exposes (issue 29), moved onto the device without a per-step host sync: each gives the
numbers of its old version (kept in bench/bench_hot_loops.py) bit for bit on the CPU, reads the device once a pass
at most, and runs where its job runs; the perturbation jobs ask for a GPU only when they run a network."""
import copy
import dataclasses
import re
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from conftest import ROOT, raw_config
from pipeline_lib import models, privacy
from pipeline_lib.defences import anp, neural_cleanse, strip
from pipeline_lib.models import to_float
from pipeline_lib.perturb import NETWORK_METHODS
from pipeline_lib.train import Recipe, Steps, augment, seed_everything
from pipeline_lib.trigger_nets import DynamicTrigger, TriggerNet

sys.path.insert(0, str(ROOT / "bench"))
import bench_hot_loops as before  # noqa: E402

CPU, META = torch.device("cpu"), torch.device("meta")   # meta: a second device to place tensors on without a GPU
READS = ("__int__", "__float__", "__bool__", "__index__", "item", "tolist", "numpy", "cpu")
RECIPE = Recipe(model="small_cnn", epochs=1, batch_size=16, lr=0.05, momentum=0.9, augment=True,
                model_options={"width": 4})
DP = {"trainable_layers": 3, "lr": 0.5, "lot_size": 32, "microbatches": 8, "physical_batch": 32, "steps": 7,
      "noise_multiplier": 1.0, "max_grad_norm": 0.5, "delta": 1e-5}   # 7 lots of 100 images: three passes


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these tensors are too small to gain from two, which stall whenever another job holds
    the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def host_reads(monkeypatch) -> Callable[[object], list[str]]:
    """reads = host_reads(module): from then on, every read of a tensor to the host (int(), float(), bool(), .item(),
    .tolist(), .numpy(), .cpu()) made by that module's own lines is appended to `reads`."""
    def count(module: object) -> list[str]:
        reads: list[str] = []
        for name in READS:
            def read(self, *args, _name=name, _real=getattr(torch.Tensor, name), **kwargs):
                if sys._getframe(1).f_code.co_filename == module.__file__:
                    reads.append(_name)
                return _real(self, *args, **kwargs)
            monkeypatch.setattr(torch.Tensor, name, read)
        return reads
    return count


def grey_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n random 8x8 grey uint8 images and labels of 5 classes."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8), rng.integers(0, 5, n)


@pytest.fixture
def pretrained(tmp_path) -> str:
    """A small CNN for the 5 classes of grey_images saved as the public-data model (random weights)."""
    torch.manual_seed(0)
    arch = {"name": "small_cnn", "in_channels": 1, "num_classes": 5, "width": 4}
    models.save_weights(tmp_path / "public.pt", arch, models.build(arch))
    return str(tmp_path / "public.pt")


@pytest.mark.parametrize("n, size", [(100, 32), (96, 32), (50, 7)])
def test_dp_lots_are_the_lots_the_dataloader_drew_pass_after_pass(n, size):
    x, y = grey_images(n)
    new, old = privacy.lots(n, size, 3, CPU), before.old_lots(x, y, size, 3)
    for _ in range(4 * (n // size)):   # four passes
        idx, (xb, yb) = next(new), next(old)
        assert torch.equal(torch.from_numpy(x)[idx], xb) and torch.equal(torch.from_numpy(y)[idx], yb)
    assert next(privacy.lots(n, size, 3, META)).device == META   # each pass's order copied to the device asked for


def frozen_on_loader_lots(x: np.ndarray, y: np.ndarray, spec: dict, pretrained: str, private: bool) -> nn.Module:
    """train_frozen's microbatched loop on the CPU as it ran on the DataLoader's lots (one forward pass a lot)."""
    seed_everything(0)
    model, _, params = privacy._frozen_model(x, RECIPE, spec, 0, CPU, pretrained, 5)
    opt = torch.optim.SGD(params, lr=spec["lr"], momentum=RECIPE.momentum, weight_decay=RECIPE.weight_decay)
    gen, micro, bound = torch.Generator().manual_seed(0), spec["microbatches"], spec["max_grad_norm"]
    for _, (xb, yb) in zip(range(spec["steps"]), before.old_lots(x, y, spec["lot_size"], 0)):
        xb = augment(to_float(xb), RECIPE, gen)
        if private:
            part = privacy.clipped_microbatch_sum(model, params, xb, yb, micro, bound)
            grads = privacy.noised_mean([torch.zeros_like(p) + g for p, g in zip(params, part)], micro,
                                        spec["noise_multiplier"] * bound, gen)
        else:
            grads = torch.autograd.grad(nn.functional.cross_entropy(model(xb), yb), params)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
    return model


@pytest.mark.parametrize("private", [True, False])
def test_dp_sgd_on_gathered_lots_trains_the_weights_the_dataloader_lots_did(pretrained, host_reads, private):
    x, y = grey_images(100)
    reads = host_reads(privacy)
    model, _ = privacy.train_frozen(x, y, RECIPE, DP, 0, CPU, pretrained, 5, private=private)
    assert reads == []   # the loop never waits on the device
    reference = frozen_on_loader_lots(x, y, DP, pretrained, private).cpu().state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())


def test_dp_timings_wait_for_the_device_they_ran_on(pretrained, monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", synced.append)
    loop = Steps(1, "timed")
    for device in (torch.device("cuda", 1), CPU):
        privacy.seconds(loop, device)
    assert synced == [torch.device("cuda", 1)]   # the CPU has nothing queued
    clock = iter(range(1, 10))
    monkeypatch.setattr(privacy, "seconds", lambda loop, device: float(next(clock)) if device == CPU else None)
    _, info = privacy.train_frozen(*grey_images(100), RECIPE, DP, 0, CPU, pretrained, 5, private=True)
    assert [e["seconds"] for e in info["epochs"]] + [info["seconds"]] == [1, 2, 3, 4]   # each pass's, the total


def backdoored_linear() -> nn.Module:
    """Ten labels on 8x8 grey images; label 3 fires on one bright corner pixel."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.normal_(0, 0.3)
        model[1].bias.zero_()
        model[1].weight[3], model[1].bias[3] = 0, -10
        model[1].weight[3, 63] = 30
    return model.eval().requires_grad_(False)


def test_neural_cleanse_reverses_the_old_triggers_reading_the_device_once_an_epoch(host_reads):
    model, x = backdoored_linear(), torch.rand(64, 1, 8, 8) * 0.5
    config = neural_cleanse.Config(epochs=20, batch_size=4, patience=2)   # 16 steps an epoch; the cost schedule runs
    for label in (0, 3):
        reads = host_reads(neural_cleanse)
        mask, pattern, norm, reached = neural_cleanse.reverse_trigger(model, x, label, config,
                                                                      torch.Generator().manual_seed(label))
        assert len(reads) <= 3 * config.epochs + 1   # the success count and the mask's norm, not each step's hits
        old = before.old_reverse_trigger(model, x, label, config, torch.Generator().manual_seed(label))
        assert torch.equal(mask, old[0]) and torch.equal(pattern, old[1]) and (norm, reached) == old[2:]


@pytest.mark.parametrize("overlays", [20, 7])
def test_strip_entropies_are_the_old_ones_with_the_probabilities_read_once(host_reads, overlays):
    torch.manual_seed(0)
    x, _ = grey_images(2 * (strip.PASS_IMAGES["cpu"] // overlays) + 5)   # two full forward passes and a part one
    pool, _ = grey_images(40, seed=1)
    for model in (models.build({"name": "small_cnn", "in_channels": 1, "num_classes": 5, "width": 4}),
                  nn.Sequential(nn.Flatten(), nn.Linear(64, 3))):
        reads = host_reads(strip)
        new = strip.strip_entropy(model, x, pool, overlays, 4, CPU)
        assert reads == ["cpu", "numpy"]
        old = before.old_strip_entropy(model, x, pool, overlays, 4, CPU)
        assert new.dtype == old.dtype and np.array_equal(new, old)
    assert strip.strip_entropy(model, x[:0], pool, overlays, 4, CPU).shape == (0,)


def test_anp_masks_and_pass_losses_are_the_old_ones_read_once_a_pass(host_reads, monkeypatch):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 2))
    x, y = torch.rand(64, 1, 6, 6), torch.randint(0, 2, (64,))
    config = dataclasses.replace(anp.Config(), iterations=250, batch_size=16)   # passes of 100, 100 and 50 steps
    losses = []
    monkeypatch.setattr(Steps, "end_pass", lambda self, pass_losses: losses.append(list(pass_losses)))
    runs = []
    for optimise, module in ((anp.optimise_masks, anp), (before.old_optimise_masks, before)):
        gen = torch.Generator().manual_seed(0)
        reads = host_reads(module)
        masked = optimise(copy.deepcopy(net), x, y, config, lambda b: augment(b, RECIPE, gen), gen)
        runs.append((list(reads), masked.mask_values()))
    (reads, new), (old_reads, old) = runs
    assert reads == ["tolist"] * 3 and len(old_reads) == config.iterations   # a read a pass, not a step
    assert np.array_equal(new, old) and losses[:3] == losses[3:]


def test_a_trained_trigger_runs_its_networks_on_their_device_and_triggers_as_before():
    torch.manual_seed(0)
    trigger = DynamicTrigger(TriggerNet(1, 1, 4, 1), TriggerNet(1, 1, 4, 1))
    x, _ = grey_images(12)
    assert np.array_equal(trigger.to(CPU).apply(x), before.old_apply(trigger, x))

    class Seen(Exception):
        pass

    def stop(module: nn.Module, args: tuple) -> None:
        raise Seen(args[0].device)
    trigger.to(META).g.register_forward_pre_hook(stop)
    assert trigger.device == META and trigger.m.net[0].weight.device == META
    with pytest.raises(Seen) as seen:
        trigger.apply(x)
    assert seen.value.args[0] == META   # the images went to the networks, not the networks' work to the host


def test_only_perturbations_that_run_a_network_ask_for_a_gpu(tmp_path):
    perturbations = raw_config("config.yaml")["perturbations"]
    names = ["noise_8", "pixel_t02", "pgd_l2_300"]
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                        "--configfile", str(ROOT / "config.yaml"), "-n",
                        *(f"results/perturbed/cifar10/{p}/c0.npz" for p in names)],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    job = r"^rule perturb_classes:.*?perturbation=(\w+)\n.*?resources: ([^\n]*)"
    jobs = dict(re.findall(job, r.stdout, re.M | re.S))
    assert sorted(jobs) == sorted(names)
    for name, resources in jobs.items():
        assert ("gpu=1" in resources) == (perturbations[name]["method"] in NETWORK_METHODS), (name, resources)
    assert "gpu=0" in jobs["noise_8"] and "gpu=1" in jobs["pgd_l2_300"]


def test_a_lot_larger_than_the_training_set_is_refused_naming_its_key(tmp_path):
    x, y = np.zeros((10, 8, 8, 1), np.uint8), np.arange(10) % 2
    recipe, spec = Recipe(model="small_cnn", epochs=1, batch_size=8, lr=0.1), {"lot_size": 64, "steps": 1, "lr": 0.1}
    with pytest.raises(ValueError, match="key 'lot_size': 64 is more than the 10 training images"):
        privacy.train_frozen(x, y, recipe, spec, 0, torch.device("cpu"), None, 2, private=False)
