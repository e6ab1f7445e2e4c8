"""Backdoor trigger patterns and their amplitude semantics (thesis 3.5, 3.6, 5.5, 7.6; SIG; blend).

A patch pattern is a sign map S over (H, W, C): +1 where the trigger is white (or lit), -1 where it
is black, 0 where the image is left alone. Applying it at amplitude a gives clip(x + a * S, 0, 255):
a = 255 replaces the patch by the pattern, smaller a adds +a on white and -a on black pixels,
exactly as in the thesis authors' poison_attack.py.

Two global triggers are mixed in instead: SIG (Barni et al. 2019) adds the horizontal sinusoid
v(i, j) = a * sin(2 pi j f / m) over the whole image (m its width); blend (Chen et al. 2017) mixes
a fixed pattern in at ratio alpha, x' = (1 - alpha) x + alpha p. Both round to the nearest integer.
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


def sig_signal(h: int, w: int, c: int, amplitude: float, frequency: int) -> np.ndarray:
    """SIG's horizontal sinusoid a * sin(2 pi j f / w), the same in every row and channel."""
    row = amplitude * np.sin(2 * np.pi * np.arange(w) * frequency / w)
    return np.broadcast_to(row[None, :, None], (h, w, c))


def blend_pattern(h: int, w: int, c: int, seed: int) -> np.ndarray:
    """A fixed uniform-noise image in 0..255 drawn from a seed (Chen et al.'s random pattern)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, c)).astype(np.float64)


PATTERNS: dict[str, Callable[[int, int, int], np.ndarray]] = {
    "bottom_right": bottom_right,
    "four_corner": four_corner,
    "center_x": center_x,
}
GLOBAL_PATTERNS = ("sig", "blend")


@dataclass(frozen=True)
class Trigger:
    """A named pattern applied at an amplitude on the 0..255 scale (SIG: the sinusoid's peak; blend: unused)."""

    pattern: str
    amplitude: int = 255
    frequency: int = 6        # SIG: periods across the image width (the ABL seed's f = 6)
    alpha: float = 0.2        # blend: weight of the pattern
    seed: int = 0             # blend: the random pattern's seed

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS and self.pattern not in GLOBAL_PATTERNS:
            known = ", ".join([*PATTERNS, *GLOBAL_PATTERNS])
            raise ValueError(f"unknown trigger pattern '{self.pattern}'; known: {known}")
        if not 0 < self.amplitude <= 255:
            raise ValueError(f"trigger amplitude {self.amplitude} outside 1..255")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"blend alpha {self.alpha} outside (0, 1]")

    def signs(self, shape: tuple[int, ...]) -> np.ndarray:
        """The sign map of a patch pattern for images of shape (..., H, W, C)."""
        return PATTERNS[self.pattern](*shape[-3:])

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Return triggered copies of uint8 NHWC (or HWC) images."""
        if images.dtype != np.uint8:
            raise TypeError(f"trigger expects uint8 images, got {images.dtype}")
        if self.pattern == "sig":
            mixed = images + sig_signal(*images.shape[-3:], self.amplitude, self.frequency)
        elif self.pattern == "blend":
            mixed = (1 - self.alpha) * images + self.alpha * blend_pattern(*images.shape[-3:], self.seed)
        else:
            mixed = images.astype(np.int16) + self.amplitude * self.signs(images.shape)
        return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
