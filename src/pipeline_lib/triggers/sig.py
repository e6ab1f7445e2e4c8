"""SIG (Barni et al. 2019): the horizontal sinusoid v(i, j) = a * sin(2 pi j f / m) added over the whole image
(m its width), rounded to the nearest integer."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..blocks import key
from ..plugins import Trigger
from . import check_uint8, clip_round


def sig_signal(h: int, w: int, c: int, amplitude: float, frequency: int) -> np.ndarray:
    """SIG's horizontal sinusoid a * sin(2 pi j f / w), the same in every row and channel."""
    row = amplitude * np.sin(2 * np.pi * np.arange(w) * frequency / w)
    return np.broadcast_to(row[None, :, None], (h, w, c))


@dataclass(frozen=True)
class Sig:
    """SIG's keys."""

    amplitude: int = key(255, "the sinusoid's peak on the 0..255 scale (the ABL seed's delta: 20-30)", minimum=1,
                         maximum=255)
    frequency: int = key(6, "periods across the image width (the ABL seed's f = 6)", minimum=1)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Triggered copies of uint8 NHWC (or HWC) images."""
        check_uint8(images)
        return clip_round(images + sig_signal(*images.shape[-3:], self.amplitude, self.frequency))


METHODS = [Trigger(name="sig", summary="SIG: a horizontal sinusoid over the whole image (Barni et al. 2019)",
                   config=Sig)]
