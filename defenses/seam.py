"""SEAM: Selective Amnesia (Zhu et al., IEEE S&P 2023). No official code exists; this follows the paper.

1. Forget: train on a small class-balanced part of the defender data (``forget_ratio``) with RANDOM
   labels (SGD lr ``forget_lr``, momentum 0.9) until the model's accuracy on the true labels of the
   defender data falls below ``forget_acc`` (the paper: near chance), at most ``max_forget_steps`` steps.
   Catastrophic forgetting erases the primary task and the backdoor together.
2. Recover: train on the whole defender data with the true labels (the shared fine-tuning recipe and
   budget; the paper recovers for about 10 epochs at lr 1e-2): the primary task comes back, the backdoor,
   absent from the recovery data, does not.
Sizes: the UNIT group's re-implementation forgets on 0.1% and recovers on 10% of the training set; here
recovery uses the defender's data (5% by default) and the forget set is 2% of it, 0.1% of the training set.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from attacks._base import to_float
from bench.engine import Recipe, fit, progress_bar
from bench.errors import ConfigError, check_fraction
from datasets import balanced_subset
from defenses._base import DefenderContext, Defense, accuracy, on_device


class SEAM(Defense):
    def __init__(
        self,
        recipe: Recipe,
        forget_ratio: float = 0.02,
        forget_lr: float = 0.01,
        forget_acc: float = 0.2,
        max_forget_steps: int = 2000,
        batch_size: int = 128,
    ) -> None:
        if max_forget_steps < 1:
            raise ConfigError(f"defense.max_forget_steps must be >= 1, got {max_forget_steps}")
        self.recipe, self.forget_lr, self.batch_size = recipe, forget_lr, batch_size
        self.forget_ratio = check_fraction("defense.forget_ratio", forget_ratio)
        self.forget_acc = check_fraction("defense.forget_acc", forget_acc)
        self.max_forget_steps = max_forget_steps

    def forget(
        self, model: nn.Module, ctx: DefenderContext, idx: torch.Tensor, x_eval: torch.Tensor,
        y_eval: torch.Tensor,
    ) -> int:  # fmt: skip
        """Random-label training on the images ``idx`` until true-label accuracy < forget_acc; returns
        the steps taken."""
        gen = torch.Generator().manual_seed(ctx.seed)
        x = to_float(ctx.data.x[idx].to(ctx.device))
        labels = torch.randint(ctx.num_classes, (len(idx),), generator=gen).to(ctx.device)
        opt = torch.optim.SGD(model.parameters(), lr=self.forget_lr, momentum=0.9)
        for step in progress_bar(
            range(1, self.max_forget_steps + 1), desc="seam forget", enabled=ctx.progress
        ):
            model.train()
            batch = torch.randint(len(idx), (min(self.batch_size, len(idx)),), generator=gen).to(ctx.device)
            loss = F.cross_entropy(model(x[batch]), labels[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.eval()
            if accuracy(model, x_eval, y_eval) < self.forget_acc:
                return step
        return self.max_forget_steps

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        x_eval, y_eval = on_device(ctx.data, ctx.device)
        acc_before = accuracy(model.eval(), x_eval, y_eval)
        idx = balanced_subset(ctx.data.y, self.forget_ratio, ctx.seed)
        steps = self.forget(model, ctx, idx, x_eval, y_eval)
        acc_forgotten = accuracy(model.eval(), x_eval, y_eval)
        fit(
            model,
            ctx.data,
            self.recipe,
            ctx.device,
            seed=ctx.seed,
            desc="seam recover",
            progress=ctx.progress,
        )
        return model, {
            "forget_images": len(idx),
            "forget_steps": steps,
            "defender_acc_before": round(100 * acc_before, 4),
            "defender_acc_after_forget": round(100 * acc_forgotten, 4),
            "defender_acc_after_recover": round(100 * accuracy(model.eval(), x_eval, y_eval), 4),
        }
