"""PreActResNet-18: the input-aware authors' CIFAR-10 classifier and BackdoorBench's default victim."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..plugins import Model
from . import Widths

if TYPE_CHECKING:
    from ..models import Classifier


def build(c: Widths, in_channels: int, num_classes: int) -> Classifier:
    """He et al. 2016 (identity mappings): 3x3 stem, four stages (w, 2w, 4w, 8w) of two pre-activation units,
    projection shortcuts where the shape changes, final BN-ReLU, global average pool."""
    from torch import nn

    from ..models import Classifier, InputNorm, PreActBlock

    layers: list[nn.Module] = [nn.Conv2d(in_channels, c.width, 3, 1, 1, bias=False)]
    width = c.width
    for i in range(4):
        for u in range(2):
            stride = 2 if i > 0 and u == 0 else 1
            out = c.width * 2 ** i
            layers.append(PreActBlock(width, out, stride, project=stride != 1 or width != out, momentum=0.1))
            width = out
    layers += [nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(InputNorm(c.norm, in_channels), nn.Sequential(*layers), width, num_classes)


METHODS = [Model(name="preact_resnet18", summary="PreActResNet-18 (He et al. 2016), CIFAR stem", config=Widths,
                 build=build, min_side=lambda c: 1)]   # padded stride 2: n -> ceil(n / 2)
