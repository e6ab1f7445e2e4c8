"""The input-aware attack's trigger networks (Nguyen & Tran 2020) and their use as a trigger: a generator draws
a pattern for each image, a mask network decides where it goes, x' = x + (g(x) - x) * m(x). Kept apart from
their training (`input_aware`) so that poisoning and evaluation do not depend on the training code.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .artifacts import load_torch, save_torch
from .models import batched, check_shapes, to_float


def _block(c_in: int, c_out: int, relu: bool = True) -> list[nn.Module]:
    """3x3 convolution, batch norm (the authors' momentum 0.05), ReLU."""
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out, momentum=0.05)] + ([nn.ReLU()] if relu else [])


class TriggerNet(nn.Module):
    """The authors' encoder-decoder from an image to a same-sized map: `levels` of two convolution blocks and a
    2x2 max-pool, starting at `width` channels and doubling per level, a middle block, then mirrored levels of
    bilinear upsampling and two blocks halving the channels (the last without ReLU). H and W must divide by
    2 ** levels."""

    def __init__(self, c_in: int, c_out: int, width: int, levels: int) -> None:
        super().__init__()
        self.levels, layers, c = levels, [], c_in
        for level in range(levels):
            w = width * 2 ** level
            layers += _block(c, w) + _block(w, w) + [nn.MaxPool2d(2)]
            c = w
        layers += _block(c, c)
        for level in reversed(range(levels)):
            out = width * 2 ** (level - 1) if level else c_out
            layers += [nn.Upsample(scale_factor=2, mode="bilinear")] + _block(c, c) + _block(c, out, relu=level > 0)
            c = out
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def pattern(g: TriggerNet, x: torch.Tensor) -> torch.Tensor:
    """The generator's trigger for each image, in [0, 1]."""
    return (torch.tanh(g(x)) + 1) / 2


def mask(m: TriggerNet, x: torch.Tensor) -> torch.Tensor:
    """The mask for each image: the authors' shifted steep tanh, nearly binary and ~0 for a zero output."""
    return torch.tanh(20 * m(x) - 10) / 2 + 0.5


def apply_trigger(g: TriggerNet, m: TriggerNet, x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
    """x with the trigger and mask drawn for `source` (x itself unless given: the cross-trigger case)."""
    s = x if source is None else source
    return x + (pattern(g, s) - x) * mask(m, s)


class DynamicTrigger:
    """A trained generator and mask as a trigger: `apply` maps uint8 NHWC images to their triggered versions, on
    the device the networks are on."""

    def __init__(self, g: TriggerNet, m: TriggerNet) -> None:
        self.g, self.m = g.eval(), m.eval()

    @property
    def device(self) -> torch.device:
        """Where the networks are, and the images are triggered."""
        return next(self.g.parameters()).device

    def to(self, device: torch.device) -> DynamicTrigger:
        """Both networks moved to `device` (in place); returns the trigger."""
        self.g.to(device)
        self.m.to(device)
        return self

    @torch.no_grad()
    def apply(self, images: np.ndarray, sources: np.ndarray | None = None) -> np.ndarray:
        """Triggered copies of uint8 NHWC images (rounded to the nearest level); with `sources`, each image
        gets the trigger and mask drawn for its source image instead (the cross-trigger case)."""
        images = np.ascontiguousarray(images)
        sources = images if sources is None else np.ascontiguousarray(sources)
        if not len(images):
            return images.copy()
        x = batched(lambda xb, src: apply_trigger(self.g, self.m, xb, source=to_float(src)), images, sources,
                    device=self.device)
        x = x.clamp(0, 1).mul(255).round().to(torch.uint8)
        return x.permute(0, 2, 3, 1).numpy()

    def save(self, path: str) -> None:
        """Both networks' weights and shapes, atomically (loaded with weights_only)."""
        first = self.g.net[0]
        save_torch(path, {"channels": first.in_channels, "width": first.out_channels, "levels": self.g.levels,
                          "generator": self.g.state_dict(), "mask": self.m.state_dict()})

    @classmethod
    def load(cls, path: str) -> DynamicTrigger:
        """The inverse of save."""
        def rebuild(state: dict) -> DynamicTrigger:
            c, w, levels = int(state["channels"]), int(state["width"]), int(state["levels"])
            check_shapes(lambda: TriggerNet(c, c, w, levels), state["generator"])
            check_shapes(lambda: TriggerNet(c, 1, w, levels), state["mask"])
            g, m = TriggerNet(c, c, w, levels), TriggerNet(c, 1, w, levels)
            g.load_state_dict(state["generator"])
            m.load_state_dict(state["mask"])
            return cls(g, m)
        return load_torch(path, rebuild)
