"""SEAM: Selective Amnesia (Zhu et al., IEEE S&P 2023). The authors released no code; this follows the
paper and the public implementation in vtu81/backdoor-toolbox (other_defenses_tool_box/SEAM.py).

1. Forget: train on a forget set drawn from the defender's data (``forget_ratio`` of it, class-balanced)
   with RANDOM labels that differ from the true ones, drawn afresh for every batch (the ``forget`` recipe:
   Adam lr 1e-3, batch 32, at most 10 epochs), until the accuracy on the forget set's TRUE labels falls
   below ``forget_acc`` (about chance: min(2 / classes, 0.6)), checked after every epoch. Catastrophic
   forgetting erases the primary task and the backdoor together.
2. Recover: train on the defender's data with the true labels (the ``recover`` recipe: Adam lr 1e-3,
   batch 32) until its accuracy exceeds ``recover_acc`` (0.97), checked after every epoch, or the epoch cap:
   the primary task comes back; the backdoor, absent from the recovery data, does not.
Sizes: the toolbox forgets on 1% and recovers on 10% of the training set; here both come from the
defender's data (5% of the training set by default), the forget set a fifth of it (1% of the training set).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from bench.core.engine import Recipe, TrainingHooks, fit
from bench.core.images import balanced_subset
from bench.core.schema import Fraction
from bench.defenses._base import DefenderContext, Defense, accuracy, on_device


class WrongLabels(TrainingHooks):
    """Replaces every batch's labels with random labels that differ from the true ones (uniform over the
    other classes), drawn afresh for every batch."""

    def __init__(self, num_classes: int, gen: torch.Generator) -> None:
        self.num_classes, self.gen = num_classes, gen

    def batch_hook(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        offset = torch.randint(1, self.num_classes, y.shape, generator=self.gen).to(y.device)
        return x, (y + offset) % self.num_classes


class SEAM(Defense):
    def __init__(
        self,
        forget: Recipe,
        recover: Recipe,
        forget_ratio: Fraction = 0.2,
        forget_acc: Fraction | None = None,
        recover_acc: Fraction = 0.97,
    ) -> None:
        self.forget_recipe, self.recover_recipe = forget, recover
        self.forget_ratio, self.forget_acc, self.recover_acc = forget_ratio, forget_acc, recover_acc

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        x_all, y_all = on_device(ctx.data, ctx.device)
        acc_before = accuracy(model.eval(), x_all, y_all)
        forget_set = ctx.data.subset(balanced_subset(ctx.data.y, self.forget_ratio, ctx.seed))
        x_forget, y_forget = on_device(forget_set, ctx.device)
        forget_acc = self.forget_acc if self.forget_acc is not None else min(2 / ctx.num_classes, 0.6)
        wrong = WrongLabels(ctx.num_classes, torch.Generator().manual_seed(ctx.seed + 1))
        forgot = fit(model, forget_set, self.forget_recipe, ctx.device, hooks=wrong, seed=ctx.seed,
                     desc="seam forget", progress=ctx.progress,
                     until=lambda m: accuracy(m, x_forget, y_forget) < forget_acc)  # fmt: skip
        acc_forgotten = accuracy(model.eval(), x_all, y_all)
        forget_set_acc = accuracy(model, x_forget, y_forget)
        recovered = fit(model, ctx.data, self.recover_recipe, ctx.device, seed=ctx.seed,
                        desc="seam recover", progress=ctx.progress,
                        until=lambda m: accuracy(m, x_all, y_all) > self.recover_acc)  # fmt: skip
        return model, {
            "forget_images": len(forget_set),
            "forget_epochs": forgot["epochs"],
            "forget_acc_target": round(100 * forget_acc, 4),
            "forget_set_acc_after_forget": round(100 * forget_set_acc, 4),
            "recover_epochs": recovered["epochs"],
            "defender_acc_before": round(100 * acc_before, 4),
            "defender_acc_after_forget": round(100 * acc_forgotten, 4),
            "defender_acc_after_recover": round(100 * accuracy(model.eval(), x_all, y_all), 4),
        }
