"""No attack: nothing is poisoned; the clean victim every poisoned one is compared with (one per dataset,
recipe, defence and seed, whatever a grid's targets and amounts)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..plugins import Attack


def nothing(y: np.ndarray, target: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """No example selected."""
    return np.empty(0, np.int64), np.empty(0, np.int64)


@dataclass(frozen=True)
class Config:
    """No keys."""


METHODS = [Attack(name="none", summary="no poison: the clean victim", config=Config, select=nothing,
                  trigger="none")]
