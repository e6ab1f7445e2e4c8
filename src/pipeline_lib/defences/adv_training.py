"""PGD adversarial training (Madry et al. 2018; the 001 seed): every batch replaced by its PGD adversarial
version, inside an l2 or l-inf ball on the 0..255 pixel scale."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..blocks import MAX_STEPS, key
from ..plugins import Defence, Job
from . import Trained


@dataclass(frozen=True)
class Config:
    """PGD's keys."""

    norm: str = key(help="PGD's norm", enum=["l2", "linf"])
    eps: float = key(help="PGD radius on the 0..255 scale", exclusiveMinimum=0)
    steps: int = key(help="PGD steps", minimum=1, maximum=MAX_STEPS)
    step: float | None = key(None, "PGD step on the 0..255 scale (default 2.5 eps / steps)", exclusiveMinimum=0)
    random_start: bool = key(True, "start from a random point of the ball (Madry et al.); poisons never do")


def adversary(config: Config, seed: int) -> Any:
    """The per-batch PGD attack, seeded (plain and stacked training apply it)."""
    from ..adversarial import pgd_adversary

    return pgd_adversary({k: v for k, v in dataclasses.asdict(config).items() if v is not None}, seed)


def fit(job: Job, config: Config) -> Trained:
    """Train on PGD adversarial batches."""
    from ..train import train

    return train(job.x, job.y, job.num_classes, job.recipe, job.seed, job.device,
                 adversary=adversary(config, job.seed), accel=job.accel)


METHODS = [Defence(name="adv_training", summary="PGD adversarial training (Madry et al. 2018)", config=Config,
                   fit=fit, stacks=True, adversary=adversary)]
