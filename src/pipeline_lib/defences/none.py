"""No defence: plain training under the victim's recipe."""
from __future__ import annotations

from dataclasses import dataclass

from ..plugins import Defence, Job
from . import Trained


@dataclass(frozen=True)
class Config:
    """No keys."""


def fit(job: Job, config: Config) -> Trained:
    """Plain training (tracing per-sample losses when the recipe asks)."""
    from ..train import train

    return train(job.x, job.y, job.num_classes, job.recipe, job.seed, job.device, tracer=job.tracer, accel=job.accel)


METHODS = [Defence(name="none", summary="plain training under the recipe", config=Config, fit=fit, stacks=True)]
