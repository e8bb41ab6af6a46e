"""FT: fine-tune all weights on the defender's clean data (the standard baseline of Table 1).

Recipe from the spec (BackdoorBench): SGD lr 0.01, momentum 0.9, wd 5e-4, cosine, crop/flip;
BackdoorBench runs 100 epochs over 2,500 images; the epochs are set in conf/defense/ft.yaml.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from bench.core.engine import Recipe, fit
from bench.defenses._base import DefenderContext, Defense


class FineTune(Defense):
    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        stats = fit(model, ctx.data, self.recipe, ctx.device, seed=ctx.seed, desc="ft", progress=ctx.progress)
        return model, {
            "epochs": self.recipe.epochs,
            "final_loss": round(stats["loss"], 4),
            "loss_per_epoch": stats["loss_per_epoch"],
            "acc_per_epoch": stats["acc_per_epoch"],
        }
