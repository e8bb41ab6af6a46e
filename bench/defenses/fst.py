"""FST (Min et al., NeurIPS 2023, "Towards Stable Backdoor Purification through Feature Shift Tuning"),
written from the paper and its official code (AISafety-HKUST/stable_backdoor_purification,
``fine_tune/ft.py --ft_mode fst``; CC BY-NC, read only).

Fine-tunes every weight after re-initialising the linear head (uniform in +-1/sqrt(in_features), weight
and bias, as the official code), with a penalty ``alpha`` <W, W_0> that pushes the new head away from the
backdoored one W_0, and after every step rescales the head's weight to W_0's norm (which keeps the
penalty from shrinking it to zero). The official recipe: SGD lr 0.01, momentum 0.9, no weight decay,
cosine, batch 128, 10 epochs (``conf/defense/fst.yaml``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.core.engine import Recipe, TrainingHooks, fit
from bench.core.network import classifier_head
from bench.defenses._base import DefenderContext, Defense


class KeepNorm(TrainingHooks):
    """After every optimiser step, the head's weight back to a fixed Frobenius norm."""

    def __init__(self, head: nn.Linear, norm: torch.Tensor) -> None:
        self.head, self.norm = head, norm

    def after_step(self) -> None:
        with torch.no_grad():
            self.head.weight.mul_(self.norm / self.head.weight.norm())


class FST(Defense):
    def __init__(self, recipe: Recipe, alpha: float = 0.2) -> None:
        self.recipe, self.alpha = recipe, alpha

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        head = classifier_head(model)
        original = head.weight.detach().clone()
        gen = torch.Generator().manual_seed(ctx.seed)
        bound = 1 / math.sqrt(head.in_features)
        with torch.no_grad():
            for param in (head.weight, head.bias):
                if param is not None:
                    param.copy_(torch.rand(param.shape, generator=gen) * 2 * bound - bound)
        smoothing = self.recipe.label_smoothing

        def loss_fn(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            ce = F.cross_entropy(m(xb), yb, label_smoothing=smoothing)
            return ce + self.alpha * (head.weight * original.to(head.weight.device)).sum()

        stats = fit(model, ctx.data, self.recipe, ctx.device, hooks=KeepNorm(head, original.norm()),
                    seed=ctx.seed, desc="fst", progress=ctx.progress, loss_fn=loss_fn)  # fmt: skip
        cosine = F.cosine_similarity(head.weight.detach().flatten(), original.flatten(), dim=0)
        return model, {
            "alpha": self.alpha,
            "head_cosine_to_original": round(cosine.item(), 4),
            "final_loss": round(stats["loss"], 4),
            "loss_per_epoch": stats["loss_per_epoch"],
            "acc_per_epoch": stats["acc_per_epoch"],
        }
