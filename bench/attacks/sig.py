"""SIG (Barni et al., ICIP 2019, "A New Backdoor Attack in CNNs by Training Set Corruption Without
Label Poisoning").

x' = clip(x + delta * sin(2 pi j f / W)): a horizontal sinusoid (varying along columns j) added to
target-class training images only, whose labels stay correct (clean-label); at test time the same
signal is added to images of other classes.
"""

from __future__ import annotations

import math

import torch

from bench.attacks._base import PoisoningAttack
from bench.core.errors import ConfigError
from bench.core.schema import Fraction, Positive


class SIG(PoisoningAttack):
    clean_label = True

    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.08,
        delta: float = 20,
        frequency: Positive = 6,
        seed: int = 0,
    ) -> None:
        super().__init__(target, poison_rate, seed)
        if not 0 < delta <= 255:
            raise ConfigError(f"attack.delta is in pixel levels (0, 255], got {delta}")
        self.delta, self.frequency = delta, frequency

    def build(self, image_shape: torch.Size) -> None:
        c, h, w = image_shape
        cols = torch.arange(w, dtype=torch.float32)
        signal = self.delta / 255 * torch.sin(2 * math.pi * cols * self.frequency / w)
        self.register_buffer("signal", signal.expand(1, c, h, w).clone())

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.signal).clamp(0, 1)
