"""Blend (Chen et al., 2017, "Targeted Backdoor Attacks on Deep Learning Systems Using Data Poisoning").

x' = (1 - a) x + a t with a = 0.2 and t a noise image, as in UNIT / BackdoorVault (the original paper's
Hello Kitty image is copyrighted and is not shipped): with ``trigger_file`` BackdoorVault's own pattern
(``blend.npy``, read from ``data_dir``), else a seeded uniform-noise image (the committed victims').
"""

from __future__ import annotations

import numpy as np
import torch

from bench.attacks import _assets
from bench.attacks._base import Poisoning, PoisoningAttack
from bench.core.schema import Fraction

PATTERN = "backdoorvault/trigger/other/blend.npy"


class Blend(PoisoningAttack):
    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.1,
        alpha: Fraction = 0.2,
        trigger_file: bool = False,
        poisoning: Poisoning = "fixed_subset",
        seed: int = 0,
    ):
        super().__init__(target, poison_rate, seed, poisoning)
        self.alpha, self.trigger_file = alpha, trigger_file

    def build(self, image_shape: torch.Size) -> None:
        if self.trigger_file:
            _assets.needs_rgb32(image_shape, "blend")
            stored = np.load(_assets.trigger_file(PATTERN, self.data_dir))  # (32, 32, 3), 0-255 floats
            pattern = torch.from_numpy(stored).permute(2, 0, 1)[None].float() / 255
        else:
            pattern = torch.rand((1, *image_shape), generator=self.generator(2))
        self.register_buffer("pattern", pattern)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (1 - self.alpha) * x + self.alpha * self.pattern
