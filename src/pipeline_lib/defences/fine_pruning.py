"""Fine-pruning (Liu, Dolan-Gavitt & Garg, RAID 2018), as BackdoorBench runs it: on the defender's clean share of
the training set, prune the penultimate features (the last convolutional stage's pooled channels) in increasing
order of mean activation, 1% at a time, while the clean share's accuracy stays within 10% (relative) of the
undefended victim's; then fine-tune the pruned model on the clean share, the pruned features held at zero."""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..blocks import key
from ..plugins import Defence, Job
from . import Trained, accuracy, clean_share, embeddings


@dataclass(frozen=True)
class Config:
    """BackdoorBench's fine-pruning defaults (config/defense/fp/config.yaml)."""

    clean_ratio: float = key(0.05, "the defender's clean share of the training set", exclusiveMinimum=0, maximum=1)
    step_ratio: float = key(0.01, "share of the features pruned per step", exclusiveMinimum=0, maximum=1)
    acc_ratio: float = key(0.1, "stop before the clean share's accuracy drops by this share of its value",
                           exclusiveMinimum=0, maximum=1)
    epochs: float = key(100, "fine-tuning epochs over the clean share", minimum=0)
    lr: float = key(0.01, "fine-tuning learning rate (constant; BackdoorBench anneals it on a cosine)",
                    exclusiveMinimum=0)


def prune_order(activations: np.ndarray) -> np.ndarray:
    """Feature indices from the least to the most active on clean data (ties by index)."""
    return np.argsort(activations, kind="stable")


def prune_count(order: np.ndarray, step: int, accuracy_with: Callable[[np.ndarray], float], base: float,
                acc_ratio: float) -> int:
    """The most features pruned (in `order`, `step` at a time) before the accuracy falls by acc_ratio of base."""
    kept = 0
    for k in range(step, len(order) + 1, step):
        if (base - accuracy_with(order[:k])) / max(base, 1e-12) >= acc_ratio:
            break
        kept = k
    return kept


def fit(job: Job, config: Config) -> Trained:
    """Prune the undefended victim's least active penultimate features, then fine-tune on the clean share."""
    import torch
    from torch.nn.utils import prune

    from .. import models
    from ..train import train

    t0 = time.perf_counter()
    model = models.load_model(job.base)
    x, y = clean_share(job, config.clean_ratio, job.seed)
    order = prune_order(embeddings(model, x, job.device).mean(0))
    head = model.classifier

    def accuracy_with(pruned: np.ndarray) -> float:
        saved = head.weight.detach().clone()
        with torch.no_grad():
            head.weight[:, torch.from_numpy(pruned)] = 0
        acc = accuracy(model, x, y, job.device)
        with torch.no_grad():
            head.weight.copy_(saved)
        return acc
    base = accuracy(model, x, y, job.device)
    step = max(1, math.ceil(config.step_ratio * len(order)))
    k = prune_count(order, step, accuracy_with, base, config.acc_ratio)
    mask = torch.ones_like(head.weight)
    mask[:, torch.from_numpy(order[:k])] = 0
    prune.custom_from_mask(head, "weight", mask)   # the pruned columns stay zero while fine-tuning
    recipe = dataclasses.replace(job.recipe, epochs=config.epochs, lr=config.lr, schedule="step", milestones=())
    model, info = train(x, y, job.num_classes, recipe, job.seed, job.device, init=model, accel=job.accel)
    prune.remove(model.classifier, "weight")
    measured = {"fp_pruned": k, "fp_features": len(order), "fp_clean_images": len(y), "fp_share_accuracy": base,
                "fp_finetuned_share_accuracy": accuracy(model, x, y, job.device)}
    return model, {**info, "seconds": time.perf_counter() - t0, "defence": measured}


METHODS = [Defence(name="fine_pruning", summary="fine-pruning (Liu et al. 2018): prune dormant features, fine-tune "
                   "on clean data", config=Config, fit=fit, needs_base=True,
                   measures=("fp_pruned", "fp_features", "fp_clean_images", "fp_share_accuracy",
                             "fp_finetuned_share_accuracy"))]
