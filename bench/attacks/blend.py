"""Blend (Chen et al., 2017, "Targeted Backdoor Attacks on Deep Learning Systems Using Data Poisoning").

x' = (1 - a) x + a t with a = 0.2 and t a seeded uniform-noise image, as in UNIT / BackdoorVault
(the original paper's Hello Kitty image is copyrighted and is not shipped).
"""

from __future__ import annotations

import torch

from bench.attacks._base import PoisoningAttack
from bench.core.errors import check_fraction
from bench.core.schema import Fraction, UnitInterval


class Blend(PoisoningAttack):
    def __init__(
        self, target: int = 0, poison_rate: Fraction = 0.1, alpha: UnitInterval = 0.2, seed: int = 0
    ):
        super().__init__(target, poison_rate, seed)
        self.alpha = check_fraction("attack.alpha", alpha)

    def build(self, image_shape: torch.Size) -> None:
        self.register_buffer("pattern", torch.rand((1, *image_shape), generator=self.generator(2)))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (1 - self.alpha) * x + self.alpha * self.pattern
