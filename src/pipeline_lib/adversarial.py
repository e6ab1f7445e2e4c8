"""Projected gradient descent (Madry et al.): the attack behind adversarial training and the perturbed poisons."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def random_start(x: torch.Tensor, norm: str, eps: float, gen: torch.Generator) -> torch.Tensor:
    """A random point of the ball around x, clipped to the pixel range: uniform in the l-inf box (Madry et al.'s
    cifar10_challenge) or on the l2 sphere (their robustness library). One draw per image, shared by stacked
    members, so a member starts where its solo run does."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 4) + x.shape[-3:]
    if norm == "linf":
        delta = (torch.rand(shape, generator=gen, device=x.device) * 2 - 1) * eps
    else:
        delta = torch.randn(shape, generator=gen, device=x.device)
        delta = delta * eps / delta.flatten(-3).norm(dim=-1).clamp_min(1e-12)[..., None, None, None]
    return (x + delta).clamp(0, 1)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float, step: float,
        steps: int, start: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient ascent on the cross-entropy of the true label inside an l2 / l-inf ball (units of [0, 1]).

    Madry et al.'s PGD: from x, or with a generator `start` from a random point of the ball, steps of size `step`
    along the gradient sign (l-inf) or the normalised gradient (l2), each followed by projection onto the ball and
    the pixel range. Images are the last three axes, so stacked members' (B, M, C, H, W) batches (labels (B, M))
    work as well.
    """
    if norm not in ("l2", "linf"):
        raise ValueError(f"unknown PGD norm '{norm}' (known: l2, linf)")
    was_training = model.training
    model.eval()
    x_adv = x.clone() if start is None else random_start(x, norm, eps, start)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        out = model(x_adv).float()
        loss = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            if norm == "linf":
                x_adv = x + (x_adv + step * grad.sign() - x).clamp(-eps, eps)
            else:
                g = grad / grad.flatten(-3).norm(dim=-1).clamp_min(1e-12)[..., None, None, None]
                d = x_adv + step * g - x
                d = d * (eps / d.flatten(-3).norm(dim=-1).clamp_min(1e-12)).clamp(max=1)[..., None, None, None]
                x_adv = x + d
            x_adv = x_adv.clamp(0, 1)  # moves each pixel towards x's box, so it stays inside the ball
    model.train(was_training)
    return x_adv.detach()


Adversary = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def pgd_adversary(spec: dict[str, Any], seed: int = 0) -> Adversary:
    """PGD at a config spec's norm, eps, step (default 2.5 eps / steps) and steps, all on the 0..255 scale; with
    `random_start`, from random points drawn by a generator seeded with `seed`."""
    eps, step = spec["eps"] / 255, spec.get("step", 2.5 * spec["eps"] / spec["steps"]) / 255
    gens: dict[torch.device, torch.Generator] = {}

    def adversary(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        start = None
        if spec.get("random_start"):
            start = gens.setdefault(x.device, torch.Generator(device=x.device).manual_seed(seed))
        return pgd(model, x, y, spec["norm"], eps, step, spec["steps"], start)
    return adversary
