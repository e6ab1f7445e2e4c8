"""Backdoor trigger patterns and their amplitude semantics (thesis 3.5, 3.6, 5.5, 7.6).

A pattern is a sign map S over (H, W, C): +1 where the trigger is white (or lit), -1 where it is
black, 0 where the image is left alone. Applying it at amplitude a gives clip(x + a * S, 0, 255):
a = 255 replaces the patch by the pattern, smaller a adds +a on white and -a on black pixels,
exactly as in the thesis authors' poison_attack.py.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

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


PATTERNS: dict[str, Callable[[int, int, int], np.ndarray]] = {
    "bottom_right": bottom_right,
    "four_corner": four_corner,
    "center_x": center_x,
}


@dataclass(frozen=True)
class Trigger:
    """A named pattern applied at an amplitude on the 0..255 scale."""

    pattern: str
    amplitude: int = 255

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown trigger pattern '{self.pattern}'; known: {', '.join(PATTERNS)}")
        if not 0 < self.amplitude <= 255:
            raise ValueError(f"trigger amplitude {self.amplitude} outside 1..255")

    def signs(self, shape: tuple[int, ...]) -> np.ndarray:
        """The sign map for images of shape (..., H, W, C)."""
        return PATTERNS[self.pattern](*shape[-3:])

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Return triggered copies of uint8 NHWC (or HWC) images."""
        if images.dtype != np.uint8:
            raise TypeError(f"trigger expects uint8 images, got {images.dtype}")
        delta = self.amplitude * self.signs(images.shape)
        return np.clip(images.astype(np.int16) + delta, 0, 255).astype(np.uint8)
