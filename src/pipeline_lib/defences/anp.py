"""Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021; csdongxian/ANP_backdoor): every batch-norm neuron gets a
mask in [0, 1] on its scale; the masks are optimised on the defender's clean share so that the network stays
accurate both as masked and when every neuron's scale and shift are also adversarially perturbed (by up to eps,
relatively); neurons a backdoor lives in are sensitive to the perturbation and their masks fall. Neurons whose
mask ends at or below the threshold have their batch-norm scale zeroed in the undefended victim (its shift kept).

As the authors' optimize_mask_cifar.py: the model in training mode (batch statistics), the perturbation drawn
uniform in [-eps, eps] then one signed gradient-ascent step of size eps (as theirs, not clipped back to [-eps, eps]
after the step), the masks by SGD (momentum 0.9) on alpha x the masked loss + (1 - alpha) x the perturbed loss,
clipped to [0, 1]; batches of 128 drawn with replacement; the recipe's augmentation. The authors sweep
thresholds and report each; the paper's 0.2 is the default here (BackdoorBench picks its threshold on the test set,
which a defender lacks)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..blocks import MAX_BATCH, MAX_STEPS, key
from ..plugins import Defence, Job
from . import Trained, clean_share

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Config:
    """The authors' defaults."""

    clean_ratio: float = key(0.01, "the defender's clean share of the training set (the authors: 500 CIFAR-10 "
                             "images)", exclusiveMinimum=0, maximum=1)
    eps: float = key(0.4, "largest relative perturbation of a neuron's scale and shift", minimum=0)
    alpha: float = key(0.2, "weight of the masked (unperturbed) loss; 1 - alpha weighs the perturbed one",
                       minimum=0, maximum=1)
    lr: float = key(0.2, "the masks' SGD learning rate (BackdoorBench: 0.01)", exclusiveMinimum=0)
    iterations: int = key(2000, "mask optimisation steps", minimum=1, maximum=MAX_STEPS)
    batch_size: int = key(128, "images per step, drawn with replacement", minimum=1, maximum=MAX_BATCH)
    threshold: float = key(0.2, "prune neurons whose mask ends at or below this", minimum=0, maximum=1)

    def __post_init__(self) -> None:
        if self.eps == 0 and self.alpha == 0:
            raise ValueError("eps 0 with alpha 0 leaves no loss to optimise the masks on")


PASS = 100  # mask steps per pass: a pass's mean loss must be finite


def affine_norms(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """The model's batch norms that have a scale, by name, in module order."""
    from torch import nn

    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and m.weight is not None]


class MaskedNorms:
    """Masks and perturbations of every affine batch norm's neurons, applied through torch.func.functional_call."""

    def __init__(self, model: nn.Module) -> None:
        import torch

        self.model, self.norms = model, affine_norms(model)
        if not self.norms:
            raise ValueError("ANP masks batch-norm neurons, and this model has none")
        like = [m.weight for _, m in self.norms]
        self.masks = [torch.ones_like(w).requires_grad_(True) for w in like]
        self.noise = [torch.zeros_like(w).requires_grad_(True) for w in like * 2]   # scales' then shifts'

    def __call__(self, x: torch.Tensor, perturbed: bool) -> torch.Tensor:
        """The model's logits under the masks, and under the perturbation too when `perturbed`."""
        from torch.func import functional_call

        k = len(self.norms)
        over = {}
        for i, (name, m) in enumerate(self.norms):
            scale = self.masks[i] + self.noise[i] if perturbed else self.masks[i]
            over[f"{name}.weight"] = m.weight * scale
            over[f"{name}.bias"] = m.bias * (1 + self.noise[k + i]) if perturbed else m.bias
        return functional_call(self.model, over, (x,))

    def redraw(self, eps: float, gen: torch.Generator) -> None:
        """Perturbations uniform in [-eps, eps]."""
        import torch

        with torch.no_grad():
            for n in self.noise:
                n.copy_((torch.rand(n.shape, generator=gen, device=n.device) * 2 - 1) * eps)

    def mask_values(self) -> np.ndarray:
        """Every neuron's mask, layer after layer."""
        return np.concatenate([m.detach().cpu().numpy() for m in self.masks])


def optimise_masks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, c: Config, augment: object,
                   gen: torch.Generator) -> MaskedNorms:
    """The authors' mask_train over `c.iterations` batches of float images x (augment: batch -> batch); `model` is
    left in training mode with its weights frozen and its batch-norm statistics moved (fit discards it)."""
    import torch
    from torch.nn.functional import cross_entropy

    from ..train import Steps

    masked = MaskedNorms(model.train().requires_grad_(False))
    mask_opt = torch.optim.SGD(masked.masks, lr=c.lr, momentum=0.9)
    noise_opt = torch.optim.SGD(masked.noise, lr=max(c.eps, 1e-12))

    def step() -> torch.Tensor:
        idx = torch.randint(len(y), (c.batch_size,), generator=gen, device=y.device)
        xb, yb = augment(x[idx]), y[idx]
        robust = torch.zeros((), device=y.device)
        if c.eps > 0:   # one signed ascent step on the perturbation from a random start
            masked.redraw(c.eps, gen)
            noise_opt.zero_grad(set_to_none=True)
            (-cross_entropy(masked(xb, True), yb)).backward()
            for n in masked.noise:
                if n.grad is not None:   # a batch norm the forward pass never reached has none
                    n.grad = n.grad.sign()
            noise_opt.step()
            robust = cross_entropy(masked(xb, True), yb)
        loss = c.alpha * cross_entropy(masked(xb, False), yb) + (1 - c.alpha) * robust
        mask_opt.zero_grad(set_to_none=True)
        loss.backward()
        mask_opt.step()
        with torch.no_grad():
            for m in masked.masks:
                m.clamp_(0, 1)
        return loss.detach()
    loop = Steps(c.iterations, "ANP masks")
    while loop.running:   # a pass's losses stay on the device until it ends: one read a pass
        losses = torch.stack([step() for _ in loop.take(range(PASS))]).tolist()
        loop.end_pass([float(np.mean(losses))])
    return masked


def prune(model: nn.Module, masks: list[torch.Tensor], threshold: float) -> int:
    """Zero the batch-norm scale (not the shift) of every neuron whose mask is at or below the threshold; how many."""
    import torch

    count = 0
    with torch.no_grad():
        for (_, m), mask in zip(affine_norms(model), masks, strict=True):
            low = mask.detach().cpu() <= threshold
            m.weight[low] = 0
            count += int(low.sum())
    return count


def fit(job: Job, config: Config) -> Trained:
    """Optimise the neurons' masks on the clean share; zero the scales of the low-mask neurons in the victim."""
    import torch

    from .. import models
    from ..models import to_float
    from ..train import augment, seed_everything

    t0 = time.perf_counter()
    seed_everything(job.seed)
    x, y = clean_share(job, config.clean_ratio, job.seed)
    gen = torch.Generator(device=job.device).manual_seed(job.seed)
    xf, yt = to_float(torch.from_numpy(x)).to(job.device), torch.from_numpy(y).to(job.device)
    recipe = job.recipe
    masked = optimise_masks(models.load_model(job.base).to(job.device), xf, yt, config,
                            (lambda b: augment(b, recipe, gen)) if recipe.augment else (lambda b: b), gen)
    values = masked.mask_values()
    model = models.load_model(job.base)       # fresh: the running statistics the optimisation moved are discarded
    pruned = prune(model, masked.masks, config.threshold)
    return model, {"arch": models.load_weights(job.base)[0], "device": str(job.device),
                   "seconds": time.perf_counter() - t0, "epochs": [],
                   "defence": {"anp_pruned": pruned, "anp_neurons": len(values), "anp_mean_mask": float(values.mean())}}


METHODS = [Defence(name="anp", summary="Adversarial Neuron Pruning (Wu & Wang 2021): prune neurons sensitive to "
                   "adversarial perturbation", config=Config, fit=fit, needs_base=True,
                   measures=("anp_pruned", "anp_neurons", "anp_mean_mask"))]
