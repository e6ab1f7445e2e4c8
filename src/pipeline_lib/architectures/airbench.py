"""The airbench94-style fast network (Keller Jordan's cifar10-airbench)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..plugins import Model
from . import Widths

if TYPE_CHECKING:
    from ..models import Classifier


def build(c: Widths, in_channels: int, num_classes: int) -> Classifier:
    """Whitening, GELU, three conv groups (w, 4w, 4w), global max-pool, a head scaled by 1/9."""
    from torch import nn

    from ..models import Classifier, ConvGroup, InputNorm, Whitening

    white = Whitening(in_channels)
    w0, w = white.out_channels, c.width
    features = nn.Sequential(white, nn.GELU(), ConvGroup(w0, w), ConvGroup(w, 4 * w), ConvGroup(4 * w, 4 * w),
                             nn.AdaptiveMaxPool2d(1), nn.Flatten())
    return Classifier(InputNorm(c.norm, in_channels), features, 4 * w, num_classes, bias=False, scale=1 / 9)


METHODS = [Model(name="airbench", summary="airbench94 layout: patch whitening, three conv groups, scaled head",
                 config=Widths, build=build, min_side=lambda c: 9)]   # whitening takes 1 pixel, 3 max-pools: 9 -> 1
