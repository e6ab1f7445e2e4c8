"""torchvision's ResNet-18 and MobileNetV2 in the CIFAR forms backdoor papers train (32x32 inputs). Imported by
`models` only when one of them is built: importing torchvision costs every job seconds."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import MobileNetV2
from torchvision.models.resnet import BasicBlock, ResNet, conv3x3

# torchvision's inverted-residual setting (expansion t, channels c, units n, first stride s) with the second
# stage's stride 2 -> 1, as CIFAR ports (kuangliu/pytorch-cifar) do: with the stride-1 stem, 32x32 ends at 4x4
CIFAR_MOBILENET_V2 = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
                      [6, 320, 1, 1]]


class SumBasicBlock(BasicBlock):
    """torchvision's BasicBlock with its residual sum out of place: opacus's per-sample-gradient hooks (DP-SGD)
    forbid changing a hooked layer's output in place, and torchvision adds the shortcut into bn2's output so."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + shortcut)


class CifarResNet(ResNet):
    """torchvision's ResNet (its BasicBlock layers, stage builder and forward) in the CIFAR form: a 3x3 stride-1 stem
    convolution, no max-pool, stages of width w, 2w, 4w, 8w, no head (it ends at the flattened global average pool)."""

    def __init__(self, in_channels: int, width: int, blocks: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        nn.Module.__init__(self)  # ResNet.__init__ fixes the ImageNet stem and widths 64..512
        self._norm_layer, self.dilation, self.groups, self.base_width, self.inplanes = nn.BatchNorm2d, 1, 1, 64, width
        self.conv1, self.bn1, self.relu = conv3x3(in_channels, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            self._make_layer(SumBasicBlock, width * 2 ** i, n, stride=1 if i == 0 else 2) for i, n in enumerate(blocks))
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Identity()


def cifar_mobilenet_v2(in_channels: int, width_mult: float) -> tuple[nn.Module, int]:
    """MobileNetV2's features with a stride-1 stem taking `in_channels`, up to the flattened global average pool,
    and their width."""
    net = MobileNetV2(10, width_mult, CIFAR_MOBILENET_V2)
    stem = nn.Conv2d(in_channels, net.features[0][0].out_channels, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(stem.weight, mode="fan_out")  # torchvision's initialisation of every convolution
    net.features[0][0] = stem
    return nn.Sequential(net.features, nn.AdaptiveAvgPool2d(1), nn.Flatten()), net.last_channel
