"""SIG (Barni et al., ICIP 2019, "A New Backdoor Attack in CNNs by Training Set Corruption Without
Label Poisoning").

x' = clip(x + delta * sin(2 pi j f / W)): a horizontal sinusoid (varying along columns j) added to
target-class training images only, whose labels stay correct (clean-label); at test time the same
signal is added to images of other classes. With ``trigger_file`` (BackdoorVault, UNIT's experiments):
x' = 0.8 x + 0.2 P, P the stored pattern (``sig.npy``, read from ``data_dir``; ``delta`` and ``frequency``
then unused).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bench.attacks import _assets
from bench.attacks._base import Poisoning, PoisoningAttack
from bench.core.schema import Fraction, PixelLevel, Positive

PATTERN = "backdoorvault/trigger/other/sig.npy"
BLEND_ALPHA = 0.2  # BackdoorVault's weight of the stored pattern


class SIG(PoisoningAttack):
    clean_label = True

    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.08,
        delta: PixelLevel = 20,
        frequency: Positive = 6,
        trigger_file: bool = False,
        poisoning: Poisoning = "fixed_subset",
        seed: int = 0,
    ) -> None:
        super().__init__(target, poison_rate, seed, poisoning)
        self.delta, self.frequency, self.trigger_file = delta, frequency, trigger_file

    def build(self, image_shape: torch.Size) -> None:
        if self.trigger_file:  # BackdoorVault: x' = (1 - 0.2) x + 0.2 P, P its stored pattern, every channel
            _assets.needs_rgb32(image_shape, "sig")
            stored = np.load(_assets.trigger_file(PATTERN, self.data_dir))  # (32, 32) uint8
            self.register_buffer(
                "pattern", torch.from_numpy(stored).float().div(255).expand(1, 3, -1, -1).clone()
            )
            return
        c, h, w = image_shape
        cols = torch.arange(w, dtype=torch.float32)
        signal = self.delta / 255 * torch.sin(2 * math.pi * cols * self.frequency / w)
        self.register_buffer("signal", signal.expand(1, c, h, w).clone())

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.trigger_file:
            return ((1 - BLEND_ALPHA) * x + BLEND_ALPHA * self.pattern).clamp(0, 1)
        return (x + self.signal).clamp(0, 1)
