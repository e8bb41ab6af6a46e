"""CIFAR-style ResNet-18/34 (He et al., 2016): 3x3 stem, no max-pool.

Module names follow the common research code (conv1, bn1, layer1..layer4, linear; blocks with
conv1/bn1/conv2/bn2/shortcut), so its checkpoints load. Each ReLU is its own module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from bench.core.schema import Positive
from bench.models._head import PooledClassifier
from bench.models._layers import make_act


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def add_stages(
    model: nn.Module, block: Callable[[int, int, int, str], nn.Module], planes: list[int],
    blocks: tuple[int, ...], act: str,
) -> None:  # fmt: skip
    """``layer1..layerN``: stage i has ``blocks[i]`` blocks of width ``planes[i]``; stages after the
    first halve the resolution in their first block."""
    in_planes = planes[0]
    for i, (p, n) in enumerate(zip(planes, blocks, strict=True)):
        layer = [block(in_planes if j == 0 else p, p, 2 if (i > 0 and j == 0) else 1, act) for j in range(n)]
        setattr(model, f"layer{i + 1}", nn.Sequential(*layer))
        in_planes = p


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, act: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = make_act(act)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.act2 = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(PooledClassifier):
    def __init__(
        self, blocks: tuple[int, ...], num_classes: int = 10, width: Positive = 1.0, act: str = "ReLU"
    ) -> None:
        super().__init__()
        planes = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, planes[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.act = make_act(act)
        add_stages(self, BasicBlock, planes, blocks, act)
        self.linear = nn.Linear(planes[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet18(num_classes: int = 10, width: Positive = 1.0, act: str = "ReLU") -> ResNet:
    return ResNet((2, 2, 2, 2), num_classes, width, act)


def resnet34(num_classes: int = 10, width: Positive = 1.0, act: str = "ReLU") -> ResNet:
    return ResNet((3, 4, 6, 3), num_classes, width, act)
