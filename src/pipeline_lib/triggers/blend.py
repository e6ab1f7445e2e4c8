"""Blend (Chen et al. 2017): a fixed random pattern p mixed in at ratio alpha, x' = (1 - alpha) x + alpha p,
rounded to the nearest integer."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..blocks import key
from ..plugins import Trigger
from . import check_uint8, clip_round


def blend_pattern(h: int, w: int, c: int, seed: int) -> np.ndarray:
    """A fixed uniform-noise image in 0..255 drawn from a seed (Chen et al.'s random pattern)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, c)).astype(np.float64)


@dataclass(frozen=True)
class Blend:
    """Blend's keys."""

    alpha: float = key(0.2, "weight of the pattern", exclusiveMinimum=0, maximum=1)
    seed: int = key(0, "seed of the random pattern", minimum=0, maximum=2 ** 32 - 1)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Triggered copies of uint8 NHWC (or HWC) images."""
        check_uint8(images)
        return clip_round((1 - self.alpha) * images + self.alpha * blend_pattern(*images.shape[-3:], self.seed))


METHODS = [Trigger(name="blend", summary="Blend: a fixed random pattern mixed in at ratio alpha (Chen et al. 2017)",
                   config=Blend)]
