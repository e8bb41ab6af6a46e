"""Instagram-filter trigger (Liu et al., CCS 2019, ABS; the "filter" attack of BackdoorVault / UNIT).

The trigger is a photo filter, Nashville by default, from the pilgram package. Every pilgram filter is
a pointwise colour map (blend modes with constant colours, sepia, contrast, brightness, saturation),
so instead of filtering images one by one the filter is run once on the distinct colours of a batch,
laid out as a one-row image, and mapped back: exact, and as cheap as a lookup table.
"""

from __future__ import annotations

import numpy as np
import pilgram
import torch
from PIL import Image

from bench.attacks._base import Poisoning, PoisoningAttack
from bench.core.errors import ConfigError
from bench.core.images import quantize, to_float
from bench.core.schema import Fraction


class Instagram(PoisoningAttack):
    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.1,
        filter: str = "nashville",
        poisoning: Poisoning = "fixed_subset",
        seed: int = 0,
    ) -> None:
        super().__init__(target, poison_rate, seed, poisoning)
        if not callable(getattr(pilgram, filter, None)) or filter.startswith("_"):
            raise ConfigError(f"filter {filter!r} is not a pilgram filter")
        self.filter = filter

    def build(self, image_shape: torch.Size) -> None:
        if image_shape[0] != 3:
            raise ConfigError(f"the instagram attack needs RGB images, got {image_shape[0]} channels")

    def filter_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """The filter on uint8 NCHW images: run once on the distinct colours."""
        pixels = x.permute(0, 2, 3, 1).reshape(-1, 3)
        colours, inverse = torch.unique(pixels, dim=0, return_inverse=True)
        strip = Image.fromarray(colours.numpy()[None])
        mapped = torch.from_numpy(np.asarray(getattr(pilgram, self.filter)(strip))[0].copy())
        n, _, h, w = x.shape
        return mapped[inverse].reshape(n, h, w, 3).permute(0, 3, 1, 2).contiguous()

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return to_float(self.filter_uint8(quantize(x).cpu())).to(x.device)
