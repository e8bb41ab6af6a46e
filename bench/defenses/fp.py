"""Fine-Pruning (Liu et al., RAID 2018, "Fine-Pruning: Defending Against Backdooring Attacks on DNNs").

The channels of the last convolutional feature map (the one the classifier head pools) are ranked by
their mean activation on the defender's clean training split; the least active are pruned one after
another until accuracy on the defender's own validation split first falls more than ``tolerance`` below
the unpruned model's (the original's rule: the pruning stops at the first break, even if accuracy would
come back later; never test data: BackdoorBench chooses the count with test ASR). Pruning is a fixed
0/1 mask on the head's input, kept as a buffer, so the fine-tuning that follows cannot revive a pruned
channel and the repaired model saves and loads like any other.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.core.engine import Recipe, fit
from bench.core.images import to_float
from bench.core.network import classifier_head, head_features
from bench.core.schema import Fraction, OpenFraction
from bench.defenses._base import DefenderContext, Defense, split_train_val


class MaskedLinear(nn.Linear):
    """The classifier head with a 0/1 mask on its input features (pruned channels read as zero).
    Still an ``nn.Linear``, so every helper that finds the head keeps working after pruning."""

    def __init__(self, head: nn.Linear, mask: torch.Tensor) -> None:
        super().__init__(head.in_features, head.out_features, head.bias is not None,
                         head.weight.device, head.weight.dtype)  # fmt: skip
        self.load_state_dict(head.state_dict())
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x * self.mask, self.weight, self.bias)


def replace_head(model: nn.Module, new: nn.Module) -> None:
    """Swap the module that ``classifier_head`` finds for ``new`` (in place)."""
    old = classifier_head(model)
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is old:
                setattr(parent, name, new)
                return
    raise RuntimeError("classifier head not found among the model's modules")


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    return torch.cat([head_features(model, to_float(x[i : i + batch_size].to(device)))
                      for i in range(0, len(x), batch_size)])  # fmt: skip


def pruned_before_break(accs: list[float], tolerance: float) -> int:
    """How many channels to prune, given the accuracy after pruning k = 0, 1, ... channels: the last k
    before accuracy first drops more than ``tolerance`` below ``accs[0]``."""
    for k, acc in enumerate(accs):
        if accs[0] - acc > tolerance:
            return k - 1
    return len(accs) - 1


class FinePruning(Defense):
    def __init__(self, recipe: Recipe, tolerance: Fraction = 0.05, val_ratio: OpenFraction = 0.2) -> None:
        self.recipe, self.tolerance, self.val_ratio = recipe, tolerance, val_ratio

    def pruning_curve(
        self, head: nn.Linear, order: torch.Tensor, val_feats: torch.Tensor, y: torch.Tensor
    ) -> list[float]:
        """Validation accuracy after pruning the first k channels of ``order``, for k = 0..C-1."""
        mask = torch.ones(val_feats.shape[1], device=val_feats.device)
        accs = []
        with torch.no_grad():
            for k in range(len(order)):
                if k:
                    mask[order[k - 1]] = 0
                accs.append((head(val_feats * mask).argmax(1) == y).float().mean().item())
        return accs

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        train, val = split_train_val(ctx.data, self.val_ratio, ctx.seed)
        head = classifier_head(model)
        activity = features(model, train.x, ctx.device).mean(0)
        order = activity.argsort()  # least active first
        val_feats = features(model, val.x, ctx.device)
        accs = self.pruning_curve(head, order, val_feats, val.y.to(ctx.device))
        pruned = pruned_before_break(accs, self.tolerance)
        mask = torch.ones_like(activity)
        mask[order[:pruned]] = 0
        replace_head(model, MaskedLinear(head, mask))
        stats = fit(model, ctx.data, self.recipe, ctx.device, seed=ctx.seed, desc="fp", progress=ctx.progress)
        return model, {
            "channels": len(order),
            "pruned": pruned,
            "pruned_channels": sorted(order[:pruned].tolist()),
            "val_acc_unpruned": round(100 * accs[0], 4),
            "val_acc_pruned": round(100 * accs[pruned], 4),
            "final_loss": round(stats["loss"], 4),
            "loss_per_epoch": stats["loss_per_epoch"],
            "acc_per_epoch": stats["acc_per_epoch"],
        }
