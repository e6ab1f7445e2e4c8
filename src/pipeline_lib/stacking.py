"""Stacked networks: M models of one architecture as one wider network whose members never mix.

Every convolution becomes a grouped convolution (member m owns output channels [m*C, (m+1)*C) and reads only
its own input channels), every batch norm keeps per-channel statistics (hence per-member, running statistics
included), the input standardisation and the last linear layer are batched over a leading member axis.
Each member's arithmetic is its solo model's, so stacked training with one seed is solo training with that
seed, M times in one pass. Members come back out as ordinary `models.Classifier`s.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from . import models
from .accel import STACKED_DEFAULT, Accel
from .adversarial import Adversary
from .poisons import PoisonSet
from .models import to_float
from .train import Recipe, Steps, arch_of, augment, epoch_batches, optimizer_for, seed_everything, set_lr


class StackedInputNorm(nn.Module):
    """models.InputNorm for (B, M, C, H, W) input, with each member's own channel statistics."""

    def __init__(self, norms: list[models.InputNorm]) -> None:
        super().__init__()
        self.kind = norms[0].kind
        self.register_buffer("mean", torch.stack([n.mean for n in norms]))  # (M, 1, C, 1, 1)
        self.register_buffer("std", torch.stack([n.std for n in norms]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "per_image":  # per image and member, as tf.image.per_image_standardization
            n = x[0, 0].numel()
            mean = x.mean(dim=(2, 3, 4), keepdim=True)
            std = x.std(dim=(2, 3, 4), keepdim=True, correction=0).clamp_min(n ** -0.5)
            return (x - mean) / std
        if self.kind == "channel":
            return (x - self.mean.transpose(0, 1)) / self.std.transpose(0, 1)
        return x


class StackedLinear(nn.Module):
    """M linear layers applied to (B, M, F) features."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([lin.weight.detach() for lin in layers]))  # (M, K, F)
        self.bias = (nn.Parameter(torch.stack([lin.bias.detach() for lin in layers]))
                     if layers[0].bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("bmf,mkf->bmk", x, self.weight)
        return out + self.bias if self.bias is not None else out


def _widen(module: nn.Module, m: int) -> nn.Module:
    """The stacked counterpart of one layer, its tensors to be filled by `stack`."""
    if isinstance(module, nn.Conv2d):
        wide = nn.Conv2d(m * module.in_channels, m * module.out_channels, module.kernel_size, module.stride,
                         module.padding, module.dilation, m * module.groups, module.bias is not None,
                         module.padding_mode)
    elif isinstance(module, nn.BatchNorm2d):
        wide = nn.BatchNorm2d(m * module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
    elif any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False)):
        raise ValueError(f"cannot stack a {type(module).__name__} layer (only convolutions, batch norms, "
                         "parameter-free layers and the classifier's input norm and head)")
    else:
        wide = copy.copy(module)
        wide._modules = {name: _widen(child, m) for name, child in module.named_children()}
        return wide
    for name, p in module.named_parameters(recurse=False):
        getattr(wide, name).requires_grad_(p.requires_grad)  # frozen layers (whitening, unit BN scales) stay frozen
    return wide


class StackedClassifier(nn.Module):
    """M classifiers as one: (B, M, C, H, W) float images -> (B, M, num_classes) logits."""

    def __init__(self, members: list[models.Classifier]) -> None:
        super().__init__()
        self.size = len(members)
        self.norm = StackedInputNorm([c.norm for c in members])
        self.features = _widen(members[0].features, self.size)
        self.classifier = StackedLinear([c.classifier for c in members])
        self.scale = members[0].scale
        states = [c.features.state_dict() for c in members]
        with torch.no_grad():
            for key, wide in self.features.state_dict().items():
                parts = [s[key] for s in states]
                wide.copy_(parts[0] if wide.shape == parts[0].shape else torch.cat(parts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, m, c, h, w = x.shape
        z = self.features(self.norm(x).reshape(b, m * c, h, w)).reshape(b, m, -1)
        return self.classifier(z) * self.scale

    def member(self, i: int, arch: dict) -> models.Classifier:
        """Member i as an ordinary model of the given architecture spec (on the CPU, in eval mode)."""
        solo = models.build(arch)
        state = {}
        for key, t in self.state_dict().items():
            ref = solo.state_dict()[key]
            if t.dim() == ref.dim() + 1:        # member axis first: input norm, head
                part = t[i]
            elif t.shape == ref.shape:          # shared counters (num_batches_tracked)
                part = t
            else:                               # channels concatenated member by member
                part = t[i * ref.shape[0]:(i + 1) * ref.shape[0]]
            state[key] = part.detach().cpu().clone()
        solo.load_state_dict(state)
        return solo.eval()


class StackedData:
    """M poisoned versions of one training set without M copies: the clean images once, every member's
    poisoned images once, and per member an index into their concatenation."""

    def __init__(self, x: np.ndarray, y: np.ndarray, poisons: list[PoisonSet], device: torch.device) -> None:
        n = len(y)
        table = [x] + [p.images for p in poisons]
        self.pool = torch.from_numpy(np.concatenate(table)).to(device)
        slots = np.tile(np.arange(n), (len(poisons), 1))
        labels = np.tile(y, (len(poisons), 1))
        start = n
        for m, p in enumerate(poisons):
            slots[m, p.indices] = start + np.arange(len(p.indices))
            labels[m, p.indices] = p.labels
            start += len(p.indices)
        self.slots, self.labels = torch.from_numpy(slots).to(device), torch.from_numpy(labels).to(device)

    def __len__(self) -> int:
        return self.slots.shape[1]

    def member_images(self, m: int, stop: int) -> torch.Tensor:
        """Member m's first `stop` training images, float NCHW (for data-dependent initialisation)."""
        return to_float(self.pool[self.slots[m, :stop]].cpu())

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows idx of every member: float (B, M, C, H, W) images and (B, M) labels."""
        return self.pool[self.slots[:, idx].T].permute(0, 1, 4, 2, 3).float().div_(255), self.labels[:, idx].T


def train_stacked(x: np.ndarray, y: np.ndarray, poisons: list[PoisonSet], num_classes: int, recipe: Recipe,
                  seed: int, device: torch.device, adversary: Adversary | None = None,
                  accel: Accel = STACKED_DEFAULT) -> tuple[list[models.Classifier], list[dict[str, Any]]]:
    """`train.train` of every poisoned version of (x, y) at once: the same seed, hence the same initialisation,
    batch order and augmentation draws as each solo run; returns the members (on CPU) and their logs.
    `accel`: GPU speed options (bf16 autocast by default; none act on the CPU)."""
    data = StackedData(x, y, poisons, device)
    arch = arch_of(recipe, x, num_classes)
    members = []
    for m in range(len(poisons)):
        seed_everything(seed)  # the solo run's initialisation, member by member
        solo = models.build(arch)
        models.fit_to_data(solo, data.member_images(m, 10000))
        members.append(solo)
    model = accel.prepare(StackedClassifier(members).to(device), device)
    forward = accel.forward(model, device)
    size = model.size
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = optimizer_for(model, recipe)
    n = len(data)
    steps_per_epoch = max(1, n // recipe.batch_size)  # drop the last partial batch, as train.train
    total = math.ceil(recipe.epochs * steps_per_epoch)
    logs: list[list[dict[str, float]]] = [[] for _ in range(size)]
    loop = Steps(total, f"training {size} stacked members")
    while loop.running:
        model.train()
        order = torch.randperm(n, generator=gen, device=device)
        loss_sum, correct = torch.zeros(size, device=device), torch.zeros(size, device=device)
        seen = 0
        for idx in loop.take(epoch_batches(order, recipe.batch_size, steps_per_epoch)):
            set_lr(opt, recipe, loop.done, total, steps_per_epoch)
            xb, yb = data.batch(idx)
            b, c, h, w = xb.shape[0], xb.shape[2], xb.shape[3], xb.shape[4]
            if recipe.augment:  # one draw per image, shared by the members' channels
                xb = augment(xb.reshape(b, size * c, h, w), recipe, gen).reshape(b, size, c, h, w)
            if adversary is not None:
                xb = adversary(model, xb, yb)
            with accel.autocast(device):
                out = forward(xb).float()
            per_member = nn.functional.cross_entropy(out.reshape(b * size, -1), yb.reshape(-1), reduction="none",
                                                     label_smoothing=recipe.label_smoothing).view(b, size).mean(0)
            opt.zero_grad(set_to_none=True)
            per_member.sum().backward()  # members share no weights: each gets exactly its solo gradient
            opt.step()
            loss_sum += per_member.detach() * b
            correct += (out.argmax(-1) == yb).sum(0)
            seen += b
        losses = (loss_sum / seen).tolist()
        seconds = loop.end_pass(losses)
        for m, (loss, hits) in enumerate(zip(losses, (correct / seen).tolist())):
            logs[m].append({"epoch": loop.passes, "loss": loss, "train_acc": hits, "seconds": seconds})
    seconds = loop.seconds
    model = model.cpu()
    infos = [{"arch": arch, "device": str(device), "steps": total, "seconds": seconds / size,
              "images_per_second": total * recipe.batch_size * size / seconds, "epochs": logs[m],
              "cohort": {"size": size, "member": m, "seconds": seconds}} for m in range(size)]
    return [model.member(m, arch) for m in range(size)], infos
