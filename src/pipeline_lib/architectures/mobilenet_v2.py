"""MobileNetV2, the 001 seed's MobileNet, from torchvision."""
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
    """torchvision's width multiplier."""

    norm: str = NORM
    width_mult: float = key(1.0, "MobileNetV2's width multiplier", exclusiveMinimum=0, maximum=4)


def build(c: Config, in_channels: int, num_classes: int) -> Classifier:
    """torchvision's MobileNetV2 for 32x32 images: stem stride 2 -> 1 and second stage stride 2 -> 1 (total
    downsampling 8, not 32), features up to the global average pool (the dropout-linear head left out)."""
    from ..cifar_torchvision import cifar_mobilenet_v2   # torchvision: imported by the jobs that build this model only
    from ..models import Classifier, InputNorm

    features, width = cifar_mobilenet_v2(in_channels, c.width_mult)
    return Classifier(InputNorm(c.norm, in_channels), features, width, num_classes)


METHODS = [Model(name="mobilenet_v2", summary="torchvision's MobileNetV2, strides set for 32x32 images", config=Config,
                 build=build, min_side=lambda c: 1)]   # padded stride 2: n -> ceil(n / 2)
