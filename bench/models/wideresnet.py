"""Wide ResNet (Zagoruyko & Komodakis, 2016), WRN-depth-k with pre-activation blocks.

Module names follow the widely used PyTorch port (conv1, block1..3, bn1, fc).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from bench.core.schema import Positive, PositiveInt
from bench.models._head import PooledClassifier
from bench.models._layers import make_act
from bench.models.preact_resnet import PreActBlock
from bench.models.resnet import scaled


class WideResNet(PooledClassifier):
    head_name = "fc"

    def __init__(
        self, depth: PositiveInt = 16, widen_factor: PositiveInt = 4, num_classes: int = 10,
        width: Positive = 1.0, act: str = "ReLU",
    ) -> None:  # fmt: skip
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        planes = [scaled(c, width) for c in (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)]
        self.conv1 = nn.Conv2d(3, planes[0], 3, 1, 1, bias=False)
        in_planes = planes[0]
        for i, p in enumerate(planes[1:]):
            blocks = [PreActBlock(in_planes if j == 0 else p, p, (1 if i == 0 else 2) if j == 0 else 1, act,
                                  wrapped=False) for j in range(n)]  # fmt: skip
            setattr(self, f"block{i + 1}", nn.Sequential(*blocks))
            in_planes = p
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act = make_act(act)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.act(self.bn1(x))
