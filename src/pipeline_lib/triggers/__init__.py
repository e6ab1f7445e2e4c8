"""Fixed backdoor triggers, one module per pattern family: 3x3 patches with the thesis's amplitude semantics
(`patch`), SIG's sinusoid (`sig`) and Chen et al.'s blended random pattern (`blend`). Each pattern's config
dataclass applies it: `make_trigger(pattern, **keys).apply(uint8 NHWC images)`."""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .. import plugins


class Applies(Protocol):
    """Anything that maps uint8 NHWC images to their triggered versions."""

    def apply(self, images: np.ndarray) -> np.ndarray: ...


def make_trigger(pattern: str, **keys: Any) -> Applies:
    """The trigger a config block {pattern: ..., **keys} describes, its keys checked against the pattern's own."""
    return plugins.settings("trigger", {"pattern": pattern, **keys})[1]


def clip_round(mixed: np.ndarray) -> np.ndarray:
    """Triggered pixel values rounded to the nearest integer and clipped to uint8."""
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def check_uint8(images: np.ndarray) -> None:
    """Triggers work on uint8 pixels."""
    if images.dtype != np.uint8:
        raise TypeError(f"trigger expects uint8 images, got {images.dtype}")
