"""The input-aware attack's trigger networks (Nguyen & Tran 2020) and their use as a trigger: a generator draws
a pattern for each image, a mask network decides where it goes, x' = x + (g(x) - x) * m(x). Kept apart from
their training (`input_aware`) so that poisoning and evaluation do not depend on the training code.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .artifacts import save_torch
from .models import batched, to_float


class TriggerNet(nn.Module):
    """A small encoder-decoder from an image to a same-sized map (H and W even)."""

    def __init__(self, c_in: int, c_out: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(c_in, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, c_out, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def pattern(g: TriggerNet, x: torch.Tensor) -> torch.Tensor:
    """The generator's trigger for each image, in [0, 1]."""
    return (torch.tanh(g(x)) + 1) / 2


def mask(m: TriggerNet, x: torch.Tensor) -> torch.Tensor:
    """The mask for each image: a steep tanh makes it nearly binary."""
    return torch.tanh(20 * m(x)) / 2 + 0.5


def apply_trigger(g: TriggerNet, m: TriggerNet, x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
    """x with the trigger and mask drawn for `source` (x itself unless given: the cross-trigger case)."""
    s = x if source is None else source
    return x + (pattern(g, s) - x) * mask(m, s)


class DynamicTrigger:
    """A trained generator and mask as a trigger: `apply` maps uint8 NHWC images to their triggered versions."""

    def __init__(self, g: TriggerNet, m: TriggerNet) -> None:
        self.g, self.m = g.eval(), m.eval()

    @torch.no_grad()
    def apply(self, images: np.ndarray, sources: np.ndarray | None = None) -> np.ndarray:
        """Triggered copies of uint8 NHWC images (rounded to the nearest level); with `sources`, each image
        gets the trigger and mask drawn for its source image instead (the cross-trigger case)."""
        images = np.ascontiguousarray(images)
        sources = images if sources is None else np.ascontiguousarray(sources)
        if not len(images):
            return images.copy()
        x = batched(lambda xb, src: apply_trigger(self.g, self.m, xb, source=to_float(src)), images, sources)
        x = x.clamp(0, 1).mul(255).round().to(torch.uint8)
        return x.permute(0, 2, 3, 1).numpy()

    def save(self, path: str) -> None:
        """Both networks' weights and shapes, atomically (loaded with weights_only)."""
        first = self.g.net[0]
        save_torch(path, {"channels": first.in_channels, "width": first.out_channels,
                          "generator": self.g.state_dict(), "mask": self.m.state_dict()})

    @classmethod
    def load(cls, path: str) -> DynamicTrigger:
        """The inverse of save."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        c, w = int(state["channels"]), int(state["width"])
        g, m = TriggerNet(c, c, w), TriggerNet(c, 1, w)
        g.load_state_dict(state["generator"])
        m.load_state_dict(state["mask"])
        return cls(g, m)
