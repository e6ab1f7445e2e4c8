"""Anti-Backdoor Learning (Li et al. 2021; the 003 seed): train with local gradient ascent (LGA), isolate the
lowest-loss examples, finetune on the rest, then unlearn the isolated ones by gradient ascent. The schedule is
the authors' release (bboylyg/ABL) unless noted; the victim's recipe gives only the architecture. One SGD
optimiser carries its momentum through the three phases."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..blocks import MAX_BATCH, key
from ..plugins import Defence, Job
from . import Trained, detection, per_sample_loss

if TYPE_CHECKING:
    import torch

    from ..train import Recipe


@dataclass(frozen=True)
class Config:
    """ABL's keys, the authors' defaults."""

    gamma: float = key(0.5, "LGA: descend above this loss, ascend below it")
    isolation_ratio: float = key(0.01, "share of lowest-loss examples isolated", exclusiveMinimum=0, maximum=1)
    isolation_epochs: float = key(20, "T_te of the paper, epochs before isolating (their config.py's quick "
                                  "default: 10)", exclusiveMinimum=0)
    finetuning_epochs: float = key(60, "epochs retraining on the examples kept, with augmentation",
                                   exclusiveMinimum=0)
    finetuning_milestones: tuple[float, ...] = key((40,), "finetuning epochs where the rate drops x0.1")
    unlearning_epochs: float = key(5, "gradient-ascent epochs on the isolated examples", exclusiveMinimum=0)
    unlearning_lr: float = key(5e-4, "unlearning learning rate", exclusiveMinimum=0)
    batch_size: int = key(128, "batch size of every phase", minimum=1, maximum=MAX_BATCH)
    lr: float = key(0.1, "isolation (constant) and finetuning rate", exclusiveMinimum=0)
    momentum: float = key(0.9, "SGD momentum", minimum=0, exclusiveMaximum=1)
    nesterov: bool = key(True, "Nesterov momentum")
    weight_decay: float = key(1e-4, "weight decay", minimum=0)
    cutout: int = key(3, "Cutout length of the finetuning augmentation (with a 4-pixel crop and flips)", minimum=0)

    def phases(self, recipe: Recipe) -> tuple[Recipe, Recipe, Recipe]:
        """Isolation (no augmentation, constant rate), finetuning and unlearning as recipes on `recipe`'s model."""
        base = dataclasses.replace(recipe, batch_size=self.batch_size, lr=self.lr, momentum=self.momentum,
                                   nesterov=self.nesterov, weight_decay=self.weight_decay, schedule="step",
                                   gamma=0.1, label_smoothing=0.0, bias_lr_scale=1.0, trace_per_epoch=0,
                                   crop_padding=4, pad_mode="constant", flip=True, rotation=0.0, cutout=0)
        return (dataclasses.replace(base, epochs=self.isolation_epochs, milestones=(), augment=False),
                dataclasses.replace(base, epochs=self.finetuning_epochs, milestones=self.finetuning_milestones,
                                    augment=True, cutout=self.cutout),
                dataclasses.replace(base, epochs=self.unlearning_epochs, lr=self.unlearning_lr, milestones=(),
                                    augment=False))


def lga(loss: torch.Tensor, gamma: float) -> torch.Tensor:
    """ABL's local gradient ascent: descend while the batch loss is above gamma, ascend below it."""
    return (loss - gamma).sign() * loss


def isolate_lowest(losses: np.ndarray, ratio: float) -> np.ndarray:
    """Indices of the `ratio` share of examples with the lowest loss (at least one)."""
    return np.argsort(losses, kind="stable")[:max(1, int(len(losses) * ratio))]


def fit(job: Job, config: Config) -> Trained:
    """Isolate the lowest-loss examples after LGA training, finetune on the rest, unlearn the isolated ones."""
    import torch

    from .. import models
    from ..models import to_float
    from ..train import arch_of, optimizer_for, seed_everything, train

    t0 = time.perf_counter()
    isolation, finetuning, unlearning = config.phases(job.recipe)
    x, y, nc, seed, device = job.x, job.y, job.num_classes, job.seed, job.device
    seed_everything(seed)
    model = models.build(arch_of(job.recipe, x, nc))
    models.fit_to_data(model, to_float(torch.from_numpy(x[:10000])))
    opt = optimizer_for(model, isolation)
    model, _ = train(x, y, nc, isolation, seed, device, init=model, optimizer=opt,
                     loss_transform=lambda loss: lga(loss, config.gamma), accel=job.accel)
    isolated = np.zeros(len(y), bool)
    isolated[isolate_lowest(per_sample_loss(model, x, y, device), config.isolation_ratio)] = True
    model, info = train(x[~isolated], y[~isolated], nc, finetuning, seed, device, init=model, optimizer=opt,
                        accel=job.accel)
    model, _ = train(x[isolated], y[isolated], nc, unlearning, seed, device, init=model, optimizer=opt,
                     loss_transform=torch.neg, accel=job.accel)
    found = detection(isolated, job.poisoned)
    return model, {**info, "seconds": time.perf_counter() - t0,
                   "defence": {"isolated": found["flagged"], "isolation_precision": found["precision"],
                               "isolation_recall": found["recall"]}}


METHODS = [Defence(name="abl", summary="Anti-Backdoor Learning (Li et al. 2021)", config=Config, fit=fit,
                   measures=("isolated", "isolation_precision", "isolation_recall"))]
