"""Attacks, one module per method: which training images are poisoned and with which labels (their triggers
are under `triggers`, their perturbations under `perturb`). The selection helpers they share are here."""
from __future__ import annotations

import numpy as np


def select(pool: np.ndarray, n: int, rng: np.random.Generator, what: str) -> np.ndarray:
    """Draw n distinct indices from pool, in random order, returned sorted."""
    if n > len(pool):
        raise ValueError(f"asked to poison {n} images but only {len(pool)} {what} exist")
    return np.sort(rng.permutation(pool)[:n])


def relabel_random(y: np.ndarray, target: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n random images of the whole training set, labelled the target (dirty-label, all-to-one)."""
    idx = select(np.arange(len(y)), n, rng, "training images")
    return idx, np.full(n, target, dtype=np.int64)
