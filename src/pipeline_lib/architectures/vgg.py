"""A VGG-style network: the thesis's black-box surrogate (7.9)."""
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
    """Widths doubling per stage."""

    norm: str = NORM
    width: int = key(64, "filters of the first stage (doubling per stage)", minimum=1, maximum=4096)
    stages: tuple[int, ...] = key((2, 2, 2), "convolutions per stage", minItems=1,
                                  items={"type": "integer", "minimum": 1, "maximum": 64})


def build(c: Config, in_channels: int, num_classes: int) -> Classifier:
    """Stacks of 3x3 conv-BN-ReLU, a max-pool after each stage, widths doubling, global average pool."""
    from torch import nn

    from ..models import Classifier, InputNorm

    layers: list[nn.Module] = []
    width = in_channels
    for i, n in enumerate(c.stages):
        for _ in range(n):
            layers += [nn.Conv2d(width, c.width * 2 ** i, 3, padding=1, bias=False), nn.BatchNorm2d(c.width * 2 ** i),
                       nn.ReLU()]
            width = c.width * 2 ** i
        layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(InputNorm(c.norm, in_channels), nn.Sequential(*layers), width, num_classes)


METHODS = [Model(name="vgg", summary="VGG-style conv-BN-ReLU stages with max-pools (the thesis's black-box surrogate)",
                 config=Config, build=build, min_side=lambda c: 2 ** len(c.stages))]   # a max-pool per stage
