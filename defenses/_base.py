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

from attacks._base import to_float
from bench.engine import autocast
from datasets import ImageSet, balanced_subset


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


def split_train_val(data: ImageSet, val_ratio: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Per-class split of the defender data into training and validation parts (UNIT: 4:1). Defenses
    choose their own thresholds on the validation part, never on test data."""
    val = balanced_subset(data.y, val_ratio, seed)
    keep = torch.ones(len(data), dtype=torch.bool)
    keep[val] = False
    return data.subset(torch.nonzero(keep).flatten()), data.subset(val)


def on_device(data: ImageSet, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Float images in [0, 1] and labels on ``device``: small defender sets are held there whole."""
    return to_float(data.x.to(device)), data.y.to(device)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Accuracy in [0, 1] on float images already on the model's device (validation loops), in the
    run's precision (``bench.engine.autocast``)."""
    with autocast(x.device):
        correct = sum(int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
                      for i in range(0, len(x), batch_size))  # fmt: skip
    return correct / max(len(y), 1)
