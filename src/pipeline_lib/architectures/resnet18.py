"""ResNet-18 in the CIFAR form the 001 and 003 seeds and the ABL and input-aware authors train."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..plugins import Model
from . import Widths

if TYPE_CHECKING:
    from ..models import Classifier


def build(c: Widths, in_channels: int, num_classes: int) -> Classifier:
    """torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool: 4 stages of 2 basic blocks."""
    from ..cifar_torchvision import CifarResNet   # torchvision: imported by the jobs that build this model only
    from ..models import Classifier, InputNorm

    return Classifier(InputNorm(c.norm, in_channels), CifarResNet(in_channels, c.width), 8 * c.width, num_classes)


METHODS = [Model(name="resnet18", summary="torchvision's ResNet-18, CIFAR stem (3x3, no max-pool)", config=Widths,
                 build=build, min_side=lambda c: 1)]   # padded stride 2: n -> ceil(n / 2)
