"""VGG-11 with batch norm (Simonyan & Zisserman, 2015), CIFAR-style: conv stack, one linear head."""

from __future__ import annotations

import torch
import torch.nn as nn

from bench.core.schema import Positive
from bench.models._head import PooledClassifier
from bench.models._layers import make_act
from bench.models.resnet import scaled

PLANS = {"vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")}


class VGG(PooledClassifier):
    head_name = "classifier"

    def __init__(self, plan: str = "vgg11", num_classes: int = 10, width: Positive = 1.0, act: str = "ReLU"):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in PLANS[plan]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                out = scaled(int(v), width)
                layers += [nn.Conv2d(in_ch, out, 3, padding=1), nn.BatchNorm2d(out), make_act(act)]
                in_ch = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_ch, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def vgg11(num_classes: int = 10, width: Positive = 1.0, act: str = "ReLU") -> VGG:
    return VGG("vgg11", num_classes, width, act)
