"""Input normalisation as part of the model, so every attack and defense works on [0, 1] images."""

from __future__ import annotations

import torch
import torch.nn as nn


class Normalized(nn.Module):
    """``net((x - mean) / std)``; state dict keys of the wrapped network live under ``net.``."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)
