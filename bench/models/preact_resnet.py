"""Pre-activation ResNet-18/34 (He et al., 2016, "Identity Mappings"), CIFAR-style.

Module names follow the research code used by BackdoorBench and UNIT (conv1, layer1..4, bn, linear;
blocks bn1/conv1/bn2/conv2/shortcut).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from bench.core.schema import Positive
from bench.models._head import PooledClassifier
from bench.models._layers import make_act
from bench.models.resnet import add_stages, scaled


class PreActBlock(nn.Module):
    """A pre-activation basic block; where its shape changes, the shortcut is a 1x1 convolution of the
    pre-activated input (``shortcut.0`` in PreAct-ResNet, ``shortcut`` in Wide ResNet: ``wrapped``)."""

    def __init__(self, in_planes: int, planes: int, stride: int, act: str, wrapped: bool = True) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act1 = make_act(act)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = make_act(act)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        if stride != 1 or in_planes != planes:
            conv = nn.Conv2d(in_planes, planes, 1, stride, bias=False)
            self.shortcut = nn.Sequential(conv) if wrapped else conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(self.act2(self.bn2(out)))
        return out + shortcut


class PreActResNet(PooledClassifier):
    def __init__(
        self, blocks: tuple[int, ...], num_classes: int = 10, width: Positive = 1.0, act: str = "ReLU"
    ) -> None:
        super().__init__()
        planes = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, planes[0], 3, 1, 1, bias=False)
        add_stages(self, PreActBlock, planes, blocks, act)
        self.bn = nn.BatchNorm2d(planes[-1])
        self.act = make_act(act)
        self.linear = nn.Linear(planes[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.act(self.bn(x))


def preact_resnet18(num_classes: int = 10, width: Positive = 1.0, act: str = "ReLU") -> PreActResNet:
    return PreActResNet((2, 2, 2, 2), num_classes, width, act)


def preact_resnet34(num_classes: int = 10, width: Positive = 1.0, act: str = "ReLU") -> PreActResNet:
    return PreActResNet((3, 4, 6, 3), num_classes, width, act)
