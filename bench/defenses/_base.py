"""The defense contract (``Defense``), the detector protocol and helpers every defense shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.nn as nn

from bench.core.engine import autocast
from bench.core.images import ImageSet, balanced_subset, to_float

# A defense's own ``gradient`` setting: the precision of its optimisation's forward/backward passes,
# whatever the run's ``precision`` (fp32 = the reference codes; bf16 = a speed option each defense measures
# against its fp32 answer before anyone relies on it: results/parity).
Gradient = Literal["fp32", "bf16"]


def gradient_autocast(device: torch.device, gradient: Gradient) -> torch.autocast:
    """bf16 autocast for a defense's forward passes when its ``gradient`` setting is ``bf16``; the
    parameters it learns (bounds, masks) and their gradients stay float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=gradient == "bf16")


@dataclass
class DefenderContext:
    """What the defender has: clean data (by default a seeded, class-balanced 5% of the training set;
    never test or poisoned data), the number of classes, the device, the cell's seed, and whether progress
    bars may be shown."""

    data: ImageSet
    num_classes: int
    device: torch.device
    seed: int = 0
    progress: bool = True


class Defense:
    """Base of every defense: one ``repair`` call per cell.

    ``repair(model, ctx)`` receives the backdoored model on ``ctx.device`` in eval mode and channels_last,
    taking images in [0, 1] (normalisation is inside the model). It may change that model in place (the
    pipeline loads a fresh copy for every cell) or return another module. It returns the repaired model
    and ``info``: what the defense reports about itself (``defense_info`` in the record), a dict that must
    be JSON-serialisable (numbers, strings, lists, dicts), e.g. steps run, neurons pruned, classes
    flagged. ``loss_per_epoch`` and ``acc_per_epoch`` entries (its fine-tuning curves, ``fit`` returns both)
    go to the record's ``curves["defense"]`` and ``curves["defense_acc"]`` instead. Thresholds are chosen
    on the defender's data only (``split_train_val``), never on test data.

    A defense that also flags triggered inputs at test time returns a model that is a ``Detector``;
    the record then carries its TPR/FPR (``detection_info``).
    """

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} must implement repair(model, ctx)")

    def check_model(self, model: nn.Module) -> None:
        """Raise ``ValueError`` if this defense cannot work on ``model``'s architecture. Called on a copy
        built on the meta device before anything trains, so a mismatch (UNIT's attention layers on a CNN,
        ANP's BatchNorm on a ViT) fails in seconds rather than after the victim."""


@runtime_checkable
class Detector(Protocol):
    """A repaired model that can also say which inputs it takes for triggered (BNA, STRIP)."""

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        """A boolean per float image in [0, 1] on the model's device: True = flagged as triggered."""
        ...


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
def accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024, fp32: bool = False
) -> float:
    """Accuracy in [0, 1] on float images already on the model's device (validation loops), in the
    run's precision (``bench.core.engine.autocast``), or in float32 with ``fp32``."""
    with autocast(x.device, enabled=not fp32):
        correct = sum(int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
                      for i in range(0, len(x), batch_size))  # fmt: skip
    return correct / max(len(y), 1)
