"""DP-SGD (Abadi et al. 2016) as the thesis's defence (5.2, 7.10), and its SGD baseline: the last layers of a
model pretrained on public data retrained in big lots, privately (clipped, noised gradients; privacy accounted
by opacus) or not. The training itself is `privacy.train_frozen`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..blocks import MAX_BATCH, MAX_STEPS, BlockError, key
from ..plugins import Defence, Job
from . import Trained

PRETRAINED_HELP = ("the surrogate trained on public data whose last layers are retrained; without it the recipe's "
                   "model is trained whole, batch norms replaced by group norms (opacus's ModuleValidator.fix)")


@dataclass(frozen=True, kw_only=True)
class FrozenConfig:
    """The SGD baseline's keys: the DP-SGD setting without clipping or noise."""

    lr: float = key(help="learning rate (the thesis's baseline: DP-SGD's divided by the microbatches)",
                    exclusiveMinimum=0)
    steps: int = key(help="optimiser steps (lots)", minimum=1, maximum=MAX_STEPS)
    pretrained: str | None = key(None, PRETRAINED_HELP)
    trainable_layers: int = key(3, "last conv/linear layers trained", minimum=1)
    lot_size: int = key(2000, "examples per lot (thesis: 2000 of 50 000)", minimum=1)


@dataclass(frozen=True, kw_only=True)
class Config(FrozenConfig):
    """DP-SGD's keys."""

    noise_multiplier: float = key(help="noise std / clipping norm", minimum=0)
    max_grad_norm: float = key(1.0, "per-microbatch l2 clipping norm", exclusiveMinimum=0)
    delta: float = key(1e-5, "delta of the reported epsilon", exclusiveMinimum=0)
    microbatches: int | None = key(None, "microbatches per lot (TF Privacy's num_microbatches; thesis 16), each "
                                   "microbatch's mean gradient clipped; left out, one per example (opacus, "
                                   "Poisson-sampled lots); must divide lot_size", minimum=1)
    physical_batch: int = key(250, "examples per forward pass (memory only)", minimum=1, maximum=MAX_BATCH)

    def __post_init__(self) -> None:
        if self.microbatches and self.lot_size % self.microbatches:
            raise BlockError("microbatches", f"{self.microbatches} does not divide lot_size {self.lot_size}")


def fit(private: bool):
    """DP-SGD's or the baseline's fit: the pretrained model's last layers trained in lots."""
    def train(job: Job, config: FrozenConfig) -> Trained:
        from ..privacy import train_frozen

        return train_frozen(job.x, job.y, job.recipe, dataclasses.asdict(config), job.seed, job.device,
                            job.pretrained, job.num_classes, private=private)
    return train


METHODS = [
    Defence(name="dp_sgd", summary="DP-SGD on the last layers of a model pretrained on public data (thesis 7.10)",
            config=Config, fit=fit(private=True),
            measures=("steps", "lot_size", "microbatches", "noise_multiplier", "max_grad_norm", "delta", "epsilon")),
    Defence(name="frozen_sgd", summary="the DP-SGD setting with plain SGD (the thesis's baseline)",
            config=FrozenConfig, fit=fit(private=False), measures=("steps", "lot_size")),
]
