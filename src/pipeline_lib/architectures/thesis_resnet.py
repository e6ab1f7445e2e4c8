"""The thesis's ResNet (Methods 7.1): Madry lab's CIFAR-10 ResNet."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..blocks import key
from ..plugins import Model

if TYPE_CHECKING:
    from ..models import Classifier


@dataclass(frozen=True)
class Config:
    """Per-image standardisation as the authors' code; unit and filter counts of the paper by default."""

    norm: str = key("per_image", "input standardisation: per_image (tf.image.per_image_standardization), "
                    "channel or none", enum=["per_image", "channel", "none"])
    units: int = key(5, "pre-activation units per group", minimum=1, maximum=64)
    filters: tuple[int, ...] = key((16, 16, 32, 64), "stem filters, then each group's", minItems=2,
                                   items={"type": "integer", "minimum": 1, "maximum": 4096})


def build(c: Config, in_channels: int, num_classes: int) -> Classifier:
    """Stem of 16 filters, three groups (16, 32, 64) of five units each, the first unit of each group projecting."""
    from torch import nn

    from ..models import Classifier, InputNorm, PreActBlock

    layers: list[nn.Module] = [nn.Conv2d(in_channels, c.filters[0], 3, 1, 1, bias=False)]
    width = c.filters[0]
    for i, f in enumerate(c.filters[1:]):
        for u in range(c.units):
            layers.append(PreActBlock(width, f, stride=(1 if i == 0 or u > 0 else 2), project=(u == 0)))
            width = f
    layers += [nn.BatchNorm2d(width, momentum=0.003), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(InputNorm(c.norm, in_channels), nn.Sequential(*layers), width, num_classes)


METHODS = [Model(name="thesis_resnet", summary="Madry lab's CIFAR ResNet (thesis 7.1): 3 groups of 5 pre-activation "
                 "units", config=Config, build=build, min_side=lambda c: 1)]   # padded stride 2: n -> ceil(n / 2)
