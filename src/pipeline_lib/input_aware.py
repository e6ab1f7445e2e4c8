"""Input-aware dynamic backdoor (Nguyen & Tran 2020): a generator draws a trigger for every input and a mask
network decides where it goes; the attacker controls training, so the classifier learns alongside them.

x' = x + (g(x) - x) * m(x), with g(x) in [0, 1] and m(x) a near-binary mask. Training mixes, per batch, a
share `p_attack` of backdoored inputs (labelled the target), a share `p_cross` of cross-trigger inputs (the
trigger of another image, label kept: a trigger only works on its own image) and clean inputs; a diversity
loss keeps triggers of different images different, a norm loss keeps masks sparse.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from . import devices, models
from .artifacts import save_json
from .attacks.input_aware import DynamicRecipe
from .data import load_prepared
from .models import predict, to_float
from .train import Recipe, Steps, arch_of, augment, optimizer_for, seed_everything, set_lr
from .trigger_nets import DynamicTrigger, TriggerNet, apply_trigger, mask, pattern


def set_rate(opt: torch.optim.Optimizer, lr: float) -> None:
    """Every parameter group of an optimiser at one learning rate."""
    for group in opt.param_groups:
        group["lr"] = lr


def diversity(x1: torch.Tensor, x2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """Mean ratio of image distance to trigger (or mask) distance, root-mean-square per pair: small when
    different images get different triggers. Two identical masks (all pixels saturated at 0, as small images
    allow) have distance 0 with a zero gradient instead of the square root's NaN."""
    def rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12).sqrt()
    return (rms(x1, x2) / (rms(t1, t2) + 1e-7)).mean()


def _pairs(n: int, batch: int, gen: torch.Generator, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (batch, other batch) index pairs from two independent shuffles."""
    a, b = torch.randperm(n, generator=gen, device=device), torch.randperm(n, generator=gen, device=device)
    return [(a[i:i + batch], b[i:i + batch]) for i in range(0, n - batch + 1, batch)]


def train_input_aware(x: np.ndarray, y: np.ndarray, num_classes: int, target: int, recipe: Recipe,
                      spec: DynamicRecipe, seed: int, device: torch.device
                      ) -> tuple[models.Classifier, TriggerNet, TriggerNet, dict[str, Any]]:
    """Train the mask network alone, then the classifier and trigger generator together (all-to-one attack)."""
    seed_everything(seed)
    c = x.shape[-1]
    xs, ys = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    g, m = (net.to(device) for net in spec.networks(c, x.shape[1]))
    t0 = time.perf_counter()

    opt_m = torch.optim.Adam(m.parameters(), spec.lr_mask, betas=(0.5, 0.9))
    m.train()
    mask_loop = Steps(max(1, round(spec.mask_epochs)), "mask network", "epochs")
    for epoch in range(mask_loop.total):
        set_rate(opt_m, spec.lr_mask * spec.lr_gamma ** sum(epoch >= e for e in spec.mask_milestones))
        mask_loss, batches = torch.zeros((), device=device), 0
        for i1, i2 in _pairs(len(ys), recipe.batch_size, gen, device):
            x1, x2 = to_float(xs[i1]), to_float(xs[i2])
            if recipe.augment:
                x1, x2 = augment(x1, recipe, gen), augment(x2, recipe, gen)
            m1, m2 = mask(m, x1), mask(m, x2)
            loss = (spec.lambda_norm * torch.relu(m1 - spec.mask_density).mean()
                    + spec.lambda_div * diversity(x1, x2, m1, m2))
            opt_m.zero_grad(set_to_none=True)
            loss.backward()
            opt_m.step()
            mask_loss, batches = mask_loss + loss.detach(), batches + 1
        mask_loop.count()
        mask_loop.end_pass([float(mask_loss) / max(batches, 1)])
    m.eval().requires_grad_(False)

    arch = arch_of(recipe, x, num_classes)
    model = models.build(arch)
    models.fit_to_data(model, to_float(torch.from_numpy(x[:10000])))
    model.to(device).train()
    g.train()
    opt_c, opt_g = optimizer_for(model, recipe), torch.optim.Adam(g.parameters(), spec.lr_generator, betas=(0.5, 0.9))
    steps_per_epoch = max(1, len(ys) // recipe.batch_size)
    loop, log = Steps(int(recipe.epochs * steps_per_epoch), "classifier and trigger generator"), []
    while loop.running:
        hits = torch.zeros(3, device=device)  # summed per-batch accuracies: backdoor, cross, clean (no host sync)
        loss_sum, first = torch.zeros((), device=device), loop.done
        for i1, i2 in loop.take(_pairs(len(ys), recipe.batch_size, gen, device)):
            step = loop.done
            set_lr(opt_c, recipe, step, loop.total, steps_per_epoch)
            set_rate(opt_g, spec.lr_generator * spec.lr_gamma ** sum(step >= e * steps_per_epoch
                                                                      for e in spec.generator_milestones))
            x1, x2, y1 = to_float(xs[i1]), to_float(xs[i2]), ys[i1]
            if recipe.augment:
                x1, x2 = augment(x1, recipe, gen), augment(x2, recipe, gen)
            nb, nc = max(1, int(spec.p_attack * len(y1))), int(spec.p_cross * len(y1))  # >= 1 backdoored
            backdoor = apply_trigger(g, m, x1[:nb])
            cross = apply_trigger(g, m, x1[nb:nb + nc], source=x2[nb:nb + nc])
            inputs = torch.cat([backdoor, cross, x1[nb + nc:]])
            labels = torch.cat([torch.full_like(y1[:nb], target), y1[nb:]])
            out = model(inputs)
            loss = (nn.functional.cross_entropy(out, labels)
                    + spec.lambda_div * diversity(x1[:nb], x2[:nb], pattern(g, x1[:nb]), pattern(g, x2[:nb])))
            opt_c.zero_grad(set_to_none=True)
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_c.step()
            opt_g.step()
            right = (out.argmax(1) == labels).float()
            hits += torch.stack([right[:nb].mean(), right[nb:nb + nc].sum() / max(nc, 1), right[nb + nc:].mean()])
            loss_sum += loss.detach()
        acc = (hits / steps_per_epoch).tolist()
        loop.end_pass([float(loss_sum) / max(loop.done - first, 1)])
        log.append({"epoch": loop.passes, "train_backdoor_acc": acc[0], "train_cross_acc": acc[1],
                    "train_clean_acc": acc[2], "seconds": time.perf_counter() - t0})
    info = {"arch": arch, "device": str(device), "seconds": time.perf_counter() - t0, "epochs": log}
    return model.eval().cpu(), g.eval().cpu(), m.cpu(), info


def cross_accuracy(model: nn.Module, trigger: DynamicTrigger, x: np.ndarray, y: np.ndarray,
                   device: torch.device) -> float:
    """Accuracy on images carrying the trigger drawn for another image (the previous one): a trigger must not
    transfer between inputs."""
    return float((predict(model, trigger.apply(x, sources=np.roll(x, 1, axis=0)), device) == y).mean())


def write_input_aware_attack(data_path: str, recipe: dict[str, Any], spec: dict[str, Any], target: int, seed: int,
                             threads: int, trigger_out: str, model_out: str, log_out: str) -> None:
    """Train the attack on the clean training set; save its trigger networks, its own (attacker-trained)
    classifier and that classifier's training log (evaluate.evaluate_attacker scores it)."""
    torch.set_num_threads(threads)
    ds = load_prepared(data_path)
    if not 0 <= target < ds.num_classes:
        raise ValueError(f"target class {target} not among the labels 0..{ds.num_classes - 1}")
    with devices.acquire() as device:
        model, g, m, info = train_input_aware(ds.x_train, ds.y_train, ds.num_classes, target,
                                              Recipe.from_config(recipe), DynamicRecipe.from_config(spec),
                                              seed, device)
        with models.non_finite_outputs_named(model_out, "training diverged, nothing saved"):
            predict(model, ds.x_test, device)   # a diverged classifier is refused before anything is saved
    DynamicTrigger(g, m).save(trigger_out)   # CPU tensors: the file's bytes do not name the device
    models.save_weights(model_out, info["arch"], model)
    save_json(log_out, info)
