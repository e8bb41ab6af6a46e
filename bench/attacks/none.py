"""No attack: the clean model of the same recipe (reference for clean accuracy and Table 2)."""

from __future__ import annotations

import torch

from bench.attacks._base import Attack


class NoAttack(Attack):
    has_trigger = False

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("attack=none has no trigger; ASR and RA are undefined")
