"""The defense contract.

A defense receives the backdoored model and the defender's context (clean data, by default a
class-balanced 5% of the training set; never test or poisoned data) and returns the repaired model
plus a dict of what it reports about itself (``defense_info`` in the record).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from datasets import ImageSet


@dataclass
class DefenderContext:
    data: ImageSet
    num_classes: int
    device: torch.device
    seed: int = 0
    progress: bool = True


class Defense:
    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} must implement repair(model, ctx)")
