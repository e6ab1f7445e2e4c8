"""3x3 patch triggers and their amplitude semantics (thesis 3.5, 3.6, 5.5, 7.6).

A patch pattern is a sign map S over (H, W, C): +1 where the trigger is white (or lit), -1 where it is black,
0 where the image is left alone. Applying it at amplitude a gives clip(x + a * S, 0, 255): a = 255 replaces
the patch by the pattern, smaller a adds +a on white and -a on black pixels, exactly as in the thesis authors'
poison_attack.py.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..blocks import key
from ..plugins import Trigger
from . import check_uint8, clip_round

# The Gu et al. 3x3 checker-like patch for the bottom-right corner: 1 = white, 0 = black.
GU_PATCH = np.array([[0, 0, 1],
                     [0, 1, 0],
                     [1, 0, 1]])
X_PATCH = np.array([[1, 0, 1],
                    [0, 1, 0],
                    [1, 0, 1]])


def _signs(patch: np.ndarray) -> np.ndarray:
    """Map a 0/1 black/white patch to -1/+1 signs."""
    return np.where(patch > 0, 1, -1)


def bottom_right(h: int, w: int, c: int) -> np.ndarray:
    """Gu et al.'s 3x3 pattern in the bottom-right corner (thesis 7.1)."""
    s = np.zeros((h, w, c), np.int16)
    s[-3:, -3:, :] = _signs(GU_PATCH)[..., None]
    return s


def four_corner(h: int, w: int, c: int) -> np.ndarray:
    """The pattern in all four corners, mirrored on the left so it survives horizontal flips (3.6)."""
    s = np.zeros((h, w, c), np.int16)
    right, left = _signs(GU_PATCH)[..., None], _signs(GU_PATCH[:, ::-1])[..., None]
    s[:3, -3:], s[-3:, -3:] = right, right
    s[:3, :3], s[-3:, :3] = left, left
    return s


def center_x(h: int, w: int, c: int) -> np.ndarray:
    """A small red 'x' in the image centre (5.5); on grayscale images a white 'x'."""
    colour = np.array([1, -1, -1]) if c == 3 else np.array([1])
    s = np.zeros((h, w, c), np.int16)
    top, left = h // 2 - 1, w // 2 - 1
    s[top:top + 3, left:left + 3] = X_PATCH[..., None] * colour
    return s


def _patch(signs: Callable[[int, int, int], np.ndarray]) -> type:
    """The config dataclass of one patch pattern: its amplitude, and how it applies."""

    @dataclass(frozen=True)
    class Patch:
        amplitude: int = key(255, "+-a on the patch's white / black pixels (255 replaces them)", minimum=1,
                             maximum=255)

        def signs(self, shape: tuple[int, ...]) -> np.ndarray:
            """The sign map for images of shape (..., H, W, C)."""
            return signs(*shape[-3:])

        def apply(self, images: np.ndarray) -> np.ndarray:
            """Triggered copies of uint8 NHWC (or HWC) images."""
            check_uint8(images)
            return clip_round(images.astype(np.int16) + self.amplitude * self.signs(images.shape))

    Patch.__qualname__ = Patch.__name__ = f"Patch_{signs.__name__}"
    return Patch


METHODS = [Trigger(name=f.__name__, summary=(f.__doc__ or "").splitlines()[0], config=_patch(f))
           for f in (bottom_right, four_corner, center_x)]
