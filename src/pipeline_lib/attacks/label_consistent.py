"""Label-consistent poisoning (Turner et al. 2019; thesis 3.2): only target-class images, labels kept, optionally
perturbed (adversarially, by interpolation or noise) before the trigger so they are harder to learn."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..blocks import key
from ..plugins import Attack
from . import select


def target_images(y: np.ndarray, target: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n random images of the target class, labels kept."""
    idx = select(np.flatnonzero(y == target), n, rng, f"images of class {target}")
    return idx, y[idx].copy()


@dataclass(frozen=True)
class Config:
    """Label-consistent poisoning's keys."""

    trigger: str = key(help="the trigger's name under `triggers`")
    perturbation: str | None = key(None, "the perturbation (under `perturbations`) applied before the trigger")


METHODS = [Attack(name="label_consistent", summary="label-consistent (Turner et al. 2019): target-class images, "
                  "perturbed and triggered, labels kept", config=Config, select=target_images, relabels=False)]
