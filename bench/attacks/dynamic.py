"""Dynamic backdoor (Salem et al., EuroS&P 2022, "Dynamic Backdoor Attacks Against Machine Learning
Models"; random-location BaN).

An MLP generator G maps noise z ~ U[0, 1)^latent to a ``size`` x ``size`` pattern, mixed half and half
with fresh uniform noise (as BackdoorVault, whose conventions UNIT's experiments follow); each triggered
image gets its own z and one of the grid positions (multiples of ``size``) at random. G is trained
jointly with the classifier on the same cross-entropy: in every batch ``poison_rate`` of the images are
triggered and relabelled, the gradient of the classifier's loss flows into G, and G's Adam optimiser
steps after the classifier's. With G frozen or a fixed position this would be BadNets-like, not BaN.
Test-time triggers draw z and positions from a seeded generator, so evaluation is reproducible.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from bench.attacks._base import JointlyTrainedAttack
from bench.core.errors import ConfigError
from bench.core.schema import Fraction, Positive, PositiveInt


class Dynamic(JointlyTrainedAttack):
    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.1,
        size: PositiveInt = 5,
        latent: PositiveInt = 100,
        hidden: PositiveInt = 128,
        lr: Positive = 1e-3,
        seed: int = 0,
    ) -> None:
        super().__init__(target, seed)
        self.poison_rate = poison_rate
        self.size, self.latent, self.hidden, self.lr = size, latent, hidden, lr

    def build(self, image_shape: torch.Size) -> None:
        c, h, w = image_shape
        if self.size > min(h, w):
            raise ConfigError(f"attack.size={self.size} exceeds the {h}x{w} images")
        with self.seeded(4):
            self.net = nn.Sequential(
                nn.Linear(self.latent, self.hidden), nn.ReLU(),
                nn.Linear(self.hidden, self.hidden), nn.ReLU(),
                nn.Linear(self.hidden, c * self.size * self.size), nn.Sigmoid(),
            )  # fmt: skip
        self.channels, self.rows, self.cols = c, h // self.size, w // self.size
        self.train_gen, self.test_seed = self.generator(2), self.seed * 1_000_003 + 3

    def patterns(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` generated patterns (differentiable in G) and their top-left corners (row, col)."""
        device = self.net[0].weight.device
        z = torch.rand(n, self.latent, generator=gen).to(device)
        noise = torch.rand(n, self.channels, self.size, self.size, generator=gen).to(device)
        pattern = (self.net(z).view(n, self.channels, self.size, self.size) + noise) / 2
        cells = torch.stack([torch.randint(self.rows, (n,), generator=gen),
                             torch.randint(self.cols, (n,), generator=gen)], 1)  # fmt: skip
        return pattern, cells * self.size

    def paste(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        pattern, corners = self.patterns(len(x), gen)
        out = x.clone()
        s = self.size
        for i, (r, c) in enumerate(corners.tolist()):
            out[i, :, r : r + s, c : c + s] = pattern[i]
        return out

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.paste(x, torch.Generator().manual_seed(self.test_seed))

    def batch_hook(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.joint_optimizer()
        n_bd = int(len(x) * self.poison_rate)
        x = torch.cat([self.paste(x[:n_bd], self.train_gen), x[n_bd:]])
        y = torch.cat([torch.full_like(y[:n_bd], self.target), y[n_bd:]])
        return x, y

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)
