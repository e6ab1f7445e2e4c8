"""DP-SGD as the thesis runs it (5.2, 7.10) and its SGD baseline: a model pretrained on public data, all but its
last layers frozen, big-lot training; TF Privacy's microbatch clipping or opacus's per-example clipping, privacy
accounted by opacus."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from . import models
from .models import to_float
from .train import Recipe, Steps, arch_of, augment, seed_everything


def freeze_all_but_last(model: models.Classifier, trainable: int) -> list[nn.Parameter]:
    """Freeze every parameter except those of the last `trainable` convolution/linear layers (their biases
    included); batch norms stay frozen. Returns the parameters left to train."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for m in layers[-trainable:] for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def from_pretrained(path: str, num_classes: int, seed: int) -> models.Classifier:
    """A pretrained model with a fresh classifier for this task's classes."""
    model = models.load_model(path)
    if model.classifier.out_features != num_classes:
        torch.manual_seed(seed)
        model.classifier = nn.Linear(model.classifier.in_features, num_classes,
                                     bias=model.classifier.bias is not None)
    return model


def frozen_batch_norms(model: nn.Module) -> nn.Module:
    """Training mode (opacus records per-sample gradients only then) with every batch norm in eval mode."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def microbatch_count(spec: dict[str, Any]) -> int:
    """Microbatches per lot: the spec's `microbatches`, else one per example (opacus's per-example clipping)."""
    return spec.get("microbatches") or spec["lot_size"]


def clipped_microbatch_sum(model: nn.Module, params: list[nn.Parameter], x: torch.Tensor, y: torch.Tensor,
                           microbatches: int, bound: float) -> list[torch.Tensor]:
    """TF Privacy's DP query on one lot (or a whole number of its microbatches): the lot is cut into contiguous
    microbatches, each microbatch's mean-loss gradient over all `params` is scaled to l2 norm at most `bound`
    (clip_by_global_norm), and the clipped gradients are summed. Every microbatch's gradient comes from one
    vectorised pass (torch.func's vmap of grad), not a backward pass each."""
    from torch.func import functional_call, grad, vmap

    names = {id(p): n for n, p in model.named_parameters()}
    trained = [names[id(p)] for p in params]
    fixed = {n: t.detach() for n, t in [*model.named_parameters(), *model.named_buffers()] if n not in trained}

    def loss(weights: tuple[torch.Tensor, ...], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, {**fixed, **dict(zip(trained, weights))}, (xb,))
        return nn.functional.cross_entropy(out, yb)

    per_micro = vmap(grad(loss), in_dims=(None, 0, 0))(tuple(p.detach() for p in params),
                                                        x.view(microbatches, -1, *x.shape[1:]),
                                                        y.view(microbatches, -1))
    norms = torch.linalg.vector_norm(torch.stack([g.flatten(1).norm(dim=1) for g in per_micro]), dim=0)
    scale = bound / torch.clamp(norms, min=bound)
    return [(g * scale.view(-1, *[1] * (g.dim() - 1))).sum(0) for g in per_micro]


def noised_mean(total: list[torch.Tensor], microbatches: int, std: float, gen: torch.Generator) -> list[torch.Tensor]:
    """Gaussian noise of `std` added to a sum of clipped gradients, then divided by the microbatches (TF Privacy's
    GaussianSumQuery followed by DPOptimizer's normalisation)."""
    return [(t + torch.randn(t.shape, generator=gen, device=t.device) * std) / microbatches for t in total]


def lots(n: int, size: int, seed: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Endless fixed-size lots of indices into a training set of n, reshuffled each pass (its last partial lot
    dropped), on `device`: the lots torch's DataLoader(shuffle=True, drop_last=True) seeded with `seed` draws, each
    pass's order copied to the device once."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        # the loader's draws of a pass, in order: its workers' base seed, the order, and the permutation its sampler
        # cuts the (empty) remainder from; all three drawn so that the lots stay those of runs made with the loader
        torch.empty((), dtype=torch.int64).random_(generator=gen)
        order = torch.randperm(n, generator=gen)
        torch.randperm(n, generator=gen)
        yield from order[:n // size * size].to(device).view(-1, size)


def seconds(loop: Steps, device: torch.device) -> float:
    """The loop's seconds so far once `device` has finished the work queued on it (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return loop.seconds


def _frozen_model(x: np.ndarray, recipe: Recipe, spec: dict[str, Any], seed: int, device: torch.device,
                  pretrained: str | None, num_classes: int) -> tuple[nn.Module, dict[str, Any], list[nn.Parameter]]:
    """The model DP-SGD and its baseline train: the pretrained one with all but its last layers frozen, or without
    one the recipe's model whole, its batch norms made group norms."""
    if pretrained is None:
        arch = arch_of(recipe, x, num_classes) | {"group_norm": True}
        model = models.build(arch)
        models.fit_to_data(model, to_float(torch.from_numpy(x[:10000])))
        model = frozen_batch_norms(model.to(device))
        return model, arch, [p for p in model.parameters() if p.requires_grad]
    arch = models.load_weights(pretrained)[0] | {"num_classes": num_classes}
    model = frozen_batch_norms(from_pretrained(pretrained, num_classes, seed).to(device))
    return model, arch, freeze_all_but_last(model, spec["trainable_layers"])


def _per_example_steps(model: nn.Module, opt: torch.optim.Optimizer, x: np.ndarray, y: np.ndarray, recipe: Recipe,
                       spec: dict[str, Any], seed: int, device: torch.device, gen: torch.Generator,
                       log: list[dict[str, float]], loop: Steps) -> tuple[nn.Module, Any]:
    """DP-SGD through opacus: Poisson-sampled lots, every example's gradient clipped. Returns the trained module and
    opacus's accountant."""
    from opacus import PrivacyEngine
    from opacus.utils.batch_memory_manager import BatchMemoryManager

    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(data, batch_size=spec["lot_size"],
                                         generator=torch.Generator().manual_seed(seed))
    engine = PrivacyEngine(accountant="rdp", secure_mode=False)
    model, opt, loader = engine.make_private(module=model, optimizer=opt, data_loader=loader,
                                             noise_multiplier=spec["noise_multiplier"],
                                             max_grad_norm=spec["max_grad_norm"], poisson_sampling=True,
                                             noise_generator=torch.Generator(device).manual_seed(seed))
    while loop.running:
        frozen_batch_norms(model)
        with BatchMemoryManager(data_loader=loader, max_physical_batch_size=spec["physical_batch"],
                                optimizer=opt) as batches:
            for xb, yb in batches:  # physical batches: a lot's last one takes the step
                xb, yb = to_float(xb.to(device)), yb.to(device)
                xb = augment(xb, recipe, gen) if recipe.augment else xb
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(xb), yb).backward()
                opt.step()
                if not opt._is_last_step_skipped:
                    loop.count()
                if not loop.running:
                    break
        log.append({"step": loop.done, "seconds": seconds(loop, device)})
    return model._module, engine.accountant


def train_frozen(x: np.ndarray, y: np.ndarray, recipe: Recipe, spec: dict[str, Any], seed: int,
                 device: torch.device, pretrained: str | None, num_classes: int,
                 private: bool) -> tuple[models.Classifier, dict[str, Any]]:
    """Train the last layers of a pretrained model in lots of `lot_size` for `steps` steps; if `private`, by
    DP-SGD: with fewer `microbatches` than examples as TF Privacy runs it (fixed-size shuffled lots, each
    microbatch's gradient clipped to `max_grad_norm`, noise of std noise_multiplier x max_grad_norm on their sum,
    divided by the microbatches), with one microbatch per example through opacus (Poisson-sampled lots, per-example
    clipping). Privacy is accounted by opacus's RDP accountant at sampling rate lot_size / n."""
    from opacus.accountants import RDPAccountant

    if spec["lot_size"] > len(y):  # no lot could be drawn: the lots would never come
        raise ValueError(f"key 'lot_size': {spec['lot_size']} is more than the {len(y)} training images")
    seed_everything(seed)
    model, arch, params = _frozen_model(x, recipe, spec, seed, device, pretrained, num_classes)
    opt = torch.optim.SGD(params, lr=spec["lr"], momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    lot, microbatches, noise = spec["lot_size"], microbatch_count(spec), spec.get("noise_multiplier", 0.0)
    gen = torch.Generator(device=device).manual_seed(seed)
    log: list[dict[str, float]] = []
    epoch = max(1, len(y) // lot)

    def log_pass(done: int) -> None:
        if done % epoch == 0 or done == spec["steps"]:
            log.append({"step": done, "seconds": seconds(loop, device)})
    if private and microbatches == lot:
        loop = Steps(spec["steps"], "DP-SGD", "lots")
        model, accountant = _per_example_steps(model, opt, x, y, recipe, spec, seed, device, gen, log, loop)
    else:
        accountant = RDPAccountant()
        loop = Steps(spec["steps"], "DP-SGD" if private else "frozen SGD", "lots", after_step=log_pass)
        frozen_batch_norms(model)  # batch norms keep their pretrained statistics (thesis 7.10)
        xs, ys = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        for idx in loop.take(lots(len(y), lot, seed, device)):
            xb, yb = to_float(xs[idx]), ys[idx]
            xb = augment(xb, recipe, gen) if recipe.augment else xb
            if private:
                # whole microbatches per forward pass, about `physical_batch` examples
                chunk = max(1, spec["physical_batch"] * microbatches // lot) * (lot // microbatches)
                total = [torch.zeros_like(p) for p in params]
                for i in range(0, lot, chunk):
                    part = clipped_microbatch_sum(model, params, xb[i:i + chunk], yb[i:i + chunk],
                                                  min(chunk, lot - i) * microbatches // lot, spec["max_grad_norm"])
                    total = [t + g for t, g in zip(total, part)]
                grads = noised_mean(total, microbatches, noise * spec["max_grad_norm"], gen)
                accountant.step(noise_multiplier=noise, sample_rate=lot / len(y))
            else:
                grads = list(torch.autograd.grad(nn.functional.cross_entropy(model(xb), yb), params))
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
    info: dict[str, Any] = {"steps": log[-1]["step"], "lot_size": lot}
    if private:
        info |= {"microbatches": microbatches, "noise_multiplier": noise, "max_grad_norm": spec["max_grad_norm"],
                 "delta": spec["delta"], "epsilon": accountant.get_epsilon(spec["delta"])}
    return model.cpu(), {"arch": arch, "device": str(device), "seconds": seconds(loop, device), "epochs": log,
                         "defence": info}
