"""WaNet (Nguyen & Tran, ICLR 2021; VinAIResearch/Warping-based_Backdoor_Attack-release): BadNets' dirty-label
poisons under the `warp` trigger, plus the noise mode that keeps the network from learning any warp as the
backdoor: cross_ratio times as many further images, warped with a randomly perturbed field, labels kept.

The authors draw both kinds afresh in every batch (a share of each batch warped, the noise fields redrawn); a poison
set is fixed, so here the same images carry the warp (and the same noise fields) in every epoch."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..blocks import key
from ..plugins import Attack
from ..triggers.warp import Warp
from . import relabel_random, select


@dataclass(frozen=True)
class Config:
    """WaNet's keys, the authors' defaults."""

    trigger: str = key(help="the trigger's name under `triggers` (its pattern must be `warp`)")
    cross_ratio: float = key(2.0, "noise-mode images per backdoored image (the authors' cross_ratio)", minimum=0)

    def crossed(self, n: int) -> int:
        """How many noise-mode images go with n backdoored ones."""
        return round(self.cross_ratio * n)


def noise_mode(x: np.ndarray, y: np.ndarray, chosen: np.ndarray, config: Config, trigger: object,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """round(cross_ratio x backdoored) images not already poisoned, each warped with its own noisy field."""
    if not isinstance(trigger, Warp):  # planning refuses other patterns (Attack.patterns); this guards library use
        raise ValueError(f"attack 'wanet' needs a trigger of pattern 'warp', got {type(trigger).__name__}")
    rest = np.setdiff1d(np.arange(len(y)), chosen)
    idx = select(rest, config.crossed(len(chosen)), rng, "unpoisoned training images for noise mode")
    return idx, trigger.noisy(x[idx], rng)


METHODS = [Attack(name="wanet", summary="WaNet (Nguyen & Tran 2021): warped images relabelled, plus noise-mode "
                  "images warped at random, labels kept", config=Config, select=relabel_random, cross=noise_mode,
                  patterns=("warp",))]
