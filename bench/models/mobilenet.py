"""MobileNetV2 (Sandler et al., 2018), CIFAR-style: stride 1 in the stem and the first stage."""

from __future__ import annotations

import torch
import torch.nn as nn

from bench.core.schema import Positive
from bench.models._head import PooledClassifier
from bench.models._layers import make_act
from bench.models.resnet import scaled

# (expansion, out_planes, num_blocks, stride); the CIFAR variant uses stride 1 in the second stage.
CFG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
       (6, 320, 1, 1))  # fmt: skip


class InvertedResidual(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int, act: str) -> None:
        super().__init__()
        self.stride = stride
        planes = expansion * in_planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = make_act(act)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = make_act(act)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(PooledClassifier):
    def __init__(self, num_classes: int = 10, width: Positive = 1.0, act: str = "ReLU") -> None:
        super().__init__()
        stem = scaled(32, width)
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.act1 = make_act(act)
        layers, in_planes = [], stem
        for expansion, out, n, stride in CFG:
            out = scaled(out, width)
            for i in range(n):
                layers.append(InvertedResidual(in_planes, out, expansion, stride if i == 0 else 1, act))
                in_planes = out
        self.layers = nn.Sequential(*layers)
        head = scaled(1280, width)
        self.conv2 = nn.Conv2d(in_planes, head, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(head)
        self.act2 = make_act(act)
        self.linear = nn.Linear(head, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.act1(self.bn1(self.conv1(x))))
        return self.act2(self.bn2(self.conv2(x)))


def mobilenet(num_classes: int = 10, width: Positive = 1.0, act: str = "ReLU") -> MobileNetV2:
    return MobileNetV2(num_classes, width, act)
