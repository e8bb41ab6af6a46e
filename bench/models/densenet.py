"""DenseNet-121 (Huang et al., 2017), CIFAR-style: 3x3 stem, growth rate 32 scaled by ``width``."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from bench.core.schema import Positive
from bench.models._head import PooledClassifier
from bench.models._layers import make_act


class Bottleneck(nn.Module):
    def __init__(self, in_planes: int, growth: int, act: str) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act1 = make_act(act)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.act2 = make_act(act)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act1(self.bn1(x)))
        out = self.conv2(self.act2(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, act: str) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.act = make_act(act)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(self.act(self.bn(x))))


class DenseNet(PooledClassifier):
    def __init__(
        self,
        blocks: tuple[int, ...] = (6, 12, 24, 16),
        num_classes: int = 10,
        width: Positive = 1.0,
        act: str = "ReLU",
        reduction: float = 0.5,
    ) -> None:
        super().__init__()
        growth = max(1, int(round(32 * width)))
        planes = 2 * growth
        self.conv1 = nn.Conv2d(3, planes, 3, padding=1, bias=False)
        for i, n in enumerate(blocks):
            dense = []
            for _ in range(n):
                dense.append(Bottleneck(planes, growth, act))
                planes += growth
            setattr(self, f"dense{i + 1}", nn.Sequential(*dense))
            if i < len(blocks) - 1:
                out = int(math.floor(planes * reduction))
                setattr(self, f"trans{i + 1}", Transition(planes, out, act))
                planes = out
        self.num_stages = len(blocks)
        self.bn = nn.BatchNorm2d(planes)
        self.act = make_act(act)
        self.linear = nn.Linear(planes, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"dense{i}")(x)
            if i < self.num_stages:
                x = getattr(self, f"trans{i}")(x)
        return self.act(self.bn(x))


def densenet121(num_classes: int = 10, width: Positive = 1.0, act: str = "ReLU") -> DenseNet:
    return DenseNet((6, 12, 24, 16), num_classes, width, act)
