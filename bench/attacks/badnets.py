"""BadNets (Gu et al., 2017, "BadNets: Identifying Vulnerabilities in the ML Model Supply Chain").

x' = (1 - m) x + m p with a small fixed patch. Variants:
- ``parity`` (UNIT's reference code): a patch of side H/6 at offset H/32 from the top-left corner
  (5x5 at offset 1 on 32x32 images): with ``trigger_file`` UNIT's own flower image there (LANCZOS-resized,
  read from ``data_dir``), else seeded random binary colours (the stand-in the committed victims used);
- ``paper``: the paper's "pattern" trigger as BackdoorBench implements it: a 3x3 white square in the
  bottom-right corner.
"""

from __future__ import annotations

from typing import Literal

import torch

from bench.attacks import _assets
from bench.attacks._base import Poisoning, PoisoningAttack
from bench.core.errors import ConfigError
from bench.core.images import stamp
from bench.core.schema import Fraction

Variant = Literal["parity", "paper"]
FLOWER = "unit_reference/trigger/badnet/flower_nobg.png"


class BadNets(PoisoningAttack):
    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.1,
        variant: Variant = "parity",
        trigger_file: bool = False,
        poisoning: Poisoning = "fixed_subset",
        seed: int = 0,
    ) -> None:
        super().__init__(target, poison_rate, seed, poisoning)
        if trigger_file and variant != "parity":
            raise ConfigError("trigger_file=true is the parity variant's patch (UNIT's flower)")
        self.variant, self.trigger_file = variant, trigger_file

    def build(self, image_shape: torch.Size) -> None:
        c, h, w = image_shape
        mask = torch.zeros(1, 1, h, w)
        if self.variant == "parity":
            size, top = h // 6, h // 32
            left = top
            if self.trigger_file:  # UNIT's flower, LANCZOS-resized to the patch
                if c != 3:
                    raise ConfigError(
                        "attack.trigger_file=true pastes UNIT's colour flower: it needs RGB images"
                    )
                patch = _assets.rgb_image(FLOWER, self.data_dir, side=size)[None]
            else:
                patch = torch.randint(0, 2, (1, c, size, size), generator=self.generator(2)).float()
        else:
            size = 3
            top, left = h - size, w - size
            patch = torch.ones(1, c, size, size)
        pattern = torch.zeros(1, c, h, w)
        pattern[..., top : top + size, left : left + size] = patch
        mask[..., top : top + size, left : left + size] = 1
        self.register_buffer("mask", mask)
        self.register_buffer("pattern", pattern)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return stamp(x, self.mask, self.pattern)
