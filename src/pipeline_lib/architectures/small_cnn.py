"""A small CNN for 8x8 digits and 28x28 MNIST."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..blocks import key
from ..plugins import Model
from . import NORM

if TYPE_CHECKING:
    from ..models import Classifier


@dataclass(frozen=True)
class Config:
    """Widths w, 2w, 4w."""

    norm: str = NORM
    width: int = key(32, "filters of the first layer (then 2x, 4x)", minimum=1, maximum=4096)


def build(c: Config, in_channels: int, num_classes: int) -> Classifier:
    """Three conv-BN-ReLU layers, each of the first two followed by a max-pool, then a 2x2 average pool."""
    from torch import nn

    from ..models import Classifier, InputNorm

    def block(a: int, b: int) -> list[nn.Module]:
        return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
    w = c.width
    features = nn.Sequential(*block(in_channels, w), nn.MaxPool2d(2), *block(w, 2 * w), nn.MaxPool2d(2),
                             *block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    return Classifier(InputNorm(c.norm, in_channels), features, 16 * w, num_classes)


METHODS = [Model(name="small_cnn", summary="three conv-BN-ReLU layers, two max-pools (digits, MNIST)", config=Config,
                 build=build, min_side=lambda c: 4)]   # two max-pools: 4 -> 1
