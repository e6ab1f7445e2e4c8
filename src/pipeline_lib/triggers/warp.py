"""WaNet's warping trigger (Nguyen & Tran, ICLR 2021; VinAIResearch/Warping-based_Backdoor_Attack-release): a
fixed, smooth random warping field moves every pixel by a fraction of a pixel, an image transformation rather
than a patch. As the authors' train.py: a k x k grid of uniform [-1, 1] offsets, normalised by its mean absolute
value, upsampled bicubically (align_corners) to the image side; the sampling grid is identity + s * field / side,
times grid_rescale, clamped to [-1, 1], read by bilinear grid sampling (align_corners). Poisoned with `badnets`
this is WaNet's dirty-label attack alone; with the `wanet` attack, also its noise mode (`noisy`: each image warped
by the field plus its own uniform [-1, 1] / side offsets, labels kept). Poison sets hold uint8 images, so the
warped images are rounded to whole pixel values, where the authors warp float batches during training: part of a
sub-pixel shift is lost to rounding."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..blocks import key
from ..plugins import Trigger
from . import check_uint8, clip_round

if TYPE_CHECKING:
    import torch


def warp_grid(side: int, k: int, s: float, grid_rescale: float, seed: int) -> torch.Tensor:
    """The authors' sampling grid (1, side, side, 2) in grid_sample's [-1, 1] coordinates (x first)."""
    import torch
    from torch.nn import functional as F

    ins = torch.rand(1, 2, k, k, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    ins = ins / torch.mean(torch.abs(ins))
    noise = F.interpolate(ins, size=side, mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    axis = torch.linspace(-1, 1, steps=side)
    x, y = torch.meshgrid(axis, axis, indexing="ij")
    identity = torch.stack((y, x), 2)[None]
    return torch.clamp((identity + s * noise / side) * grid_rescale, -1, 1)


@dataclass(frozen=True)
class Warp:
    """WaNet's keys, the authors' defaults."""

    k: int = key(4, "side of the grid of random offsets", minimum=2, maximum=1024)
    s: float = key(0.5, "warping strength", minimum=0)
    grid_rescale: float = key(1.0, "scale of the sampling grid (the authors: e.g. 0.98 to stay inside)",
                              exclusiveMinimum=0, maximum=1)
    seed: int = key(0, "seed of the random field", minimum=0, maximum=2 ** 32 - 1)

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Refuse images of shape (H, W, C) the field cannot warp (planning checks each dataset's with it)."""
        if shape[0] != shape[1]:
            raise ValueError(f"WaNet's warp takes square images, got {shape[0]}x{shape[1]}")

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Warped copies of uint8 NHWC (or HWC) square images."""
        return self._warp(images, None)

    def noisy(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """WaNet's noise-mode images: each warped by the field plus its own uniform [-1, 1] / side grid offsets
        (the authors' `grid_temps2`), clamped to the image."""
        return self._warp(images, rng)

    def _warp(self, images: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Images sampled on the field's grid, each grid perturbed from `rng` when one is given."""
        import torch
        from torch.nn import functional as F

        check_uint8(images)
        batch = images.reshape(-1, *images.shape[-3:])
        self.check_shape(batch.shape[1:])
        h = batch.shape[1]
        grid = warp_grid(h, self.k, self.s, self.grid_rescale, self.seed).double().expand(len(batch), -1, -1, -1)
        if rng is not None:
            grid = torch.clamp(grid + torch.from_numpy(rng.uniform(-1, 1, grid.shape)) / h, -1, 1)
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).double()
        out = F.grid_sample(x, grid, align_corners=True)
        return clip_round(out.permute(0, 2, 3, 1).numpy()).reshape(images.shape)


METHODS = [Trigger(name="warp", summary="WaNet's fixed warping field (Nguyen & Tran 2021)", config=Warp)]
