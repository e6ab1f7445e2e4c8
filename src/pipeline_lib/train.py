"""Training loops: one hyperparameter recipe per config block, seeded, on the device the caller leases."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from . import models
from .accel import TRAIN_DEFAULT, Accel
from .artifacts import DivergedError
from .blocks import from_block
from .adversarial import Adversary
from .models import batched, to_float
from .runlog import Progress


@dataclass(frozen=True)
class Recipe:
    """Training hyperparameters; the config's `recipes.<name>` block, field for field."""

    model: str                      # a model of the catalogue (pipeline_lib.architectures)
    epochs: float                   # passes over the training set (fractional allowed)
    batch_size: int
    lr: float                       # peak learning rate for a mean-reduced loss
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "step"          # 'step' (x gamma at each milestone epoch) or 'triangle'
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    triangle: tuple[float, float, float] = (0.2, 0.23, 0.07)  # start factor, peak position, end factor
    label_smoothing: float = 0.0
    bias_lr_scale: float = 1.0      # airbench: larger lr (same per-step decay) for batch-norm biases
    augment: bool = False           # random crops + horizontal flips (thesis 7.7)
    crop_padding: int = 4
    pad_mode: str = "constant"      # 'constant' (zeros, as tf's crop_or_pad) or 'reflect'
    flip: bool = True
    rotation: float = 0.0           # random rotations up to this many degrees, nearest pixel, zero fill (0 = none)
    cutout: int = 0                 # Cutout: one square of this length // 2 on each side of a random centre zeroed
    trace_per_epoch: int = 0        # per-sample loss snapshots per epoch (Figure 4-1); 0 = none
    model_options: dict[str, Any] = field(default_factory=dict)  # e.g. norm, width

    @classmethod
    def from_config(cls, block: dict[str, Any]) -> Recipe:
        """Build from a config block, rejecting unknown keys by name."""
        return from_block(cls, block, "recipe")

    def lr_factor(self, step: int, total: int, steps_per_epoch: int) -> float:
        """Learning-rate multiplier at a step."""
        if self.schedule == "step":
            return self.gamma ** sum(step >= m * steps_per_epoch for m in self.milestones)
        start, peak, end = self.triangle
        p = int(peak * total)
        return start + (1 - start) * step / p if step < p else 1 + (end - 1) * (step - p) / max(total - p, 1)


def augment(x: torch.Tensor, recipe: Recipe, gen: torch.Generator) -> torch.Tensor:
    """Per-image random crop after padding, random rotation, random horizontal flip and Cutout (each as the recipe
    says), batched, in torchvision's RandomCrop, RandomRotation, RandomHorizontalFlip order, Cutout last."""
    b, c, h, w = x.shape
    p = recipe.crop_padding
    if p:
        padded = nn.functional.pad(x, (p, p, p, p), mode=recipe.pad_mode)
        dy, dx = (torch.randint(0, 2 * p + 1, (2, b), generator=gen, device=x.device))
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
        x = padded.permute(0, 2, 3, 1)[torch.arange(b, device=x.device)[:, None, None], rows, cols]
        x = x.permute(0, 3, 1, 2)
    if recipe.rotation:
        angle = (torch.rand(b, generator=gen, device=x.device) * 2 - 1) * math.radians(recipe.rotation)
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        x = nn.functional.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    if recipe.flip:
        flip = torch.rand(b, generator=gen, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if recipe.cutout:
        half = recipe.cutout // 2
        cy = torch.randint(0, h, (b,), generator=gen, device=x.device)
        cx = torch.randint(0, w, (b,), generator=gen, device=x.device)
        rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        hole = (((rows >= cy[:, None] - half) & (rows < cy[:, None] + half))[:, :, None]
                & ((cols >= cx[:, None] - half) & (cols < cx[:, None] + half))[:, None, :])
        x = x * ~hole[:, None]
    return x


def arch_of(recipe: Recipe, x: np.ndarray, num_classes: int) -> dict[str, Any]:
    """The model spec saved with the weights."""
    return {"name": recipe.model, "in_channels": int(x.shape[-1]), "num_classes": num_classes,
            **recipe.model_options}


def optimizer_for(model: nn.Module, r: Recipe) -> torch.optim.Optimizer:
    """SGD with momentum; batch-norm biases optionally get airbench's scaled learning rate."""
    bn_bias = [p for m in model.modules() if isinstance(m, nn.BatchNorm2d)
               for p in m.parameters() if p.requires_grad] if r.bias_lr_scale != 1 else []
    ids = {id(p) for p in bn_bias}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": rest, "lr": r.lr, "weight_decay": r.weight_decay, "base_lr": r.lr}]
    if bn_bias:
        lr_b = r.lr * r.bias_lr_scale
        groups.append({"params": bn_bias, "lr": lr_b, "weight_decay": r.weight_decay / r.bias_lr_scale,
                       "base_lr": lr_b})
    return torch.optim.SGD(groups, momentum=r.momentum, nesterov=r.nesterov)


def epoch_batches(order: torch.Tensor, batch_size: int, steps: int) -> Iterator[torch.Tensor]:
    """The index batches of one pass over a permutation, the last partial batch dropped."""
    return (order[i * batch_size:(i + 1) * batch_size] for i in range(steps))


def set_lr(opt: torch.optim.Optimizer, recipe: Recipe, step: int, total: int, steps_per_epoch: int) -> None:
    """Every parameter group at its base learning rate times the schedule's factor for this step."""
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * recipe.lr_factor(step, total, steps_per_epoch)


def seed_everything(seed: int) -> None:
    """Seed torch and numpy (CPU kernels are then deterministic; cuDNN autotunes on GPU for speed)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.backends.cudnn.benchmark = True


def check_losses(losses: list[float], epoch: int) -> None:
    """Stop a training whose epoch losses (one per stacked member) are not all finite: its model is never saved."""
    bad = [m for m, loss in enumerate(losses) if not math.isfinite(loss)]
    if bad:
        who = f"of member {', '.join(map(str, bad))} " if len(losses) > 1 else ""
        raise DivergedError(f"training diverged: the mean loss {who}in epoch {epoch} is {losses[bad[0]]} (is a "
                            "learning rate or weight decay too large?); nothing saved")


T = TypeVar("T")


class Steps:
    """The skeleton every training loop runs on: `total` optimiser steps taken in passes over the data; it counts
    the steps, reports progress, calls `after_step(steps done)` after each, and ends each pass by stopping a training
    whose pass losses are not finite (its model is never saved)."""

    def __init__(self, total: int, what: str, unit: str = "steps",
                 after_step: Callable[[int], None] | None = None) -> None:
        self.total, self.done, self.passes = total, 0, 0
        self.after_step = after_step
        self.t0 = time.perf_counter()
        self._progress = Progress(what, total, unit)

    @property
    def running(self) -> bool:
        """Steps are left."""
        return self.done < self.total

    @property
    def seconds(self) -> float:
        """Seconds since the loop began."""
        return time.perf_counter() - self.t0

    def count(self) -> None:
        """One optimiser step taken."""
        self.done += 1
        self._progress.update(self.done)
        if self.after_step is not None:
            self.after_step(self.done)

    def take(self, batches: Iterable[T]) -> Iterator[T]:
        """One pass: its batches until the last step (none drawn beyond it), each counted as a step once the loop
        body has run on it."""
        it = iter(batches)
        while self.done < self.total:
            batch = next(it, None)
            if batch is None:
                return
            yield batch
            self.count()

    def end_pass(self, losses: Sequence[float] = ()) -> float:
        """Close a pass: its mean loss per member must be finite; returns the seconds so far."""
        self.passes += 1
        check_losses(list(losses), self.passes)
        return self.seconds


Tracer = Callable[[nn.Module, int], None]
LossTransform = Callable[[torch.Tensor], torch.Tensor]
ExtraLoss = Callable[[torch.Tensor], torch.Tensor]


def train(x: np.ndarray, y: np.ndarray, num_classes: int, recipe: Recipe, seed: int, device: torch.device,
          adversary: Adversary | None = None, tracer: Tracer | None = None, init: models.Classifier | None = None,
          loss_transform: LossTransform | None = None, optimizer: torch.optim.Optimizer | None = None,
          accel: Accel = TRAIN_DEFAULT, extra_loss: ExtraLoss | None = None
          ) -> tuple[models.Classifier, dict[str, Any]]:
    """Train a model on uint8 NHWC images; return it (on CPU) and a per-epoch log.

    adversary:      replaces each (augmented) batch by its adversarial version (Madry et al.'s training);
    tracer:         called with (model, step) `recipe.trace_per_epoch` times per epoch and at the end;
    init:           continue training this model instead of a fresh one;
    loss_transform: maps the batch's mean loss to the loss minimised (ABL's local gradient ascent, unlearning);
    optimizer:      continue with this optimiser of `init`'s parameters (momentum kept), its rate now the recipe's;
    accel:          GPU speed options (bf16 autocast and channels-last by default; none act on the CPU);
    extra_loss:     a term added to each batch's loss, called with the batch's images after the model's forward
                    (NAD's attention distillation, reading the maps the student's hooks kept).
    """
    seed_everything(seed)
    arch = arch_of(recipe, x, num_classes)
    model = init if init is not None else models.build(arch)
    xs, ys = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    if init is None:
        models.fit_to_data(model, to_float(torch.from_numpy(x[:10000])))
    model = accel.prepare(model.to(device), device)
    forward = accel.forward(model, device)
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = optimizer_for(model, recipe) if optimizer is None else optimizer
    if optimizer is not None:
        for group in opt.param_groups:
            group["base_lr"] = recipe.lr
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    n = len(xs)
    steps_per_epoch = max(1, n // recipe.batch_size)  # drop the last partial batch
    total = math.ceil(recipe.epochs * steps_per_epoch)
    trace_every = max(1, steps_per_epoch // recipe.trace_per_epoch) if recipe.trace_per_epoch else 0

    def trace(done: int) -> None:
        if done % trace_every == 0 or done == total:
            tracer(model, done)
            model.train()
    loop = Steps(total, "training", after_step=trace if tracer is not None and trace_every else None)
    log: list[dict[str, float]] = []
    while loop.running:
        model.train()
        order = torch.randperm(n, generator=gen, device=device)
        loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
        for idx in loop.take(epoch_batches(order, recipe.batch_size, steps_per_epoch)):
            set_lr(opt, recipe, loop.done, total, steps_per_epoch)
            xb, yb = to_float(xs[idx]), ys[idx]
            if recipe.augment:
                xb = augment(xb, recipe, gen)
            if adversary is not None:
                xb = adversary(model, xb, yb)
            with accel.autocast(device):
                out = forward(xb)
                loss = loss_fn(out.float(), yb)
                minimised = loss if extra_loss is None else loss + extra_loss(xb)
            opt.zero_grad(set_to_none=True)
            (loss_transform(minimised) if loss_transform is not None else minimised).backward()
            opt.step()
            loss_sum += minimised.detach() * len(yb)
            correct += (out.argmax(1) == yb).sum()
            seen += len(yb)
        mean_loss = float(loss_sum) / seen
        log.append({"epoch": loop.passes + 1, "loss": mean_loss, "train_acc": float(correct) / seen,
                    "seconds": loop.end_pass([mean_loss])})
    seconds = loop.seconds
    info = {"arch": arch, "device": str(device), "steps": total, "seconds": seconds,
            "images_per_second": total * recipe.batch_size / seconds, "epochs": log}
    return model.cpu().to(memory_format=torch.contiguous_format), info


class LossTrace:
    """Per-sample training losses of named groups over training: median and interquartile range (Figure 4-1)."""

    def __init__(self, groups: dict[str, tuple[np.ndarray, np.ndarray]], device: torch.device) -> None:
        self.groups = {k: (torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
                       for k, (x, y) in groups.items() if len(y)}
        self.points: list[dict[str, Any]] = []

    @torch.no_grad()
    def __call__(self, model: nn.Module, step: int) -> None:
        model.eval()
        point: dict[str, Any] = {"step": step}
        for name, (x, y) in self.groups.items():
            losses = batched(lambda xb, yb: nn.functional.cross_entropy(model(xb).float(), yb, reduction="none"),
                             x, y)
            q = torch.quantile(losses, torch.tensor([0.25, 0.5, 0.75], device=losses.device)).tolist()
            point[name] = {"q25": q[0], "median": q[1], "q75": q[2], "median_se": median_se(losses)}
        self.points.append(point)


def median_se(values: torch.Tensor) -> float:
    """The standard error of a sample's median from its distribution-free 95% interval: the order statistics
    n/2 -+ 1.96 sqrt(n)/2 (the median's rank among n draws is Binomial(n, 1/2)), their distance / (2 x 1.96)."""
    ordered, n = values.double().sort().values, len(values)
    half = 1.96 * n ** 0.5 / 2
    low, high = max(round(n / 2 - half), 0), min(round(n / 2 + half), n - 1)
    return float(ordered[high] - ordered[low]) / (2 * 1.96)
