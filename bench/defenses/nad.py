"""NAD: Neural Attention Distillation (Li et al., ICLR 2021).

1. Teacher: a copy of the backdoored model fine-tuned on the defender data.
2. Student: the backdoored model trained with CE + sum_i beta_i * AT-loss at the ends of the last
   ``len(betas)`` stages (found for any architecture by ``stage_ends``). The attention map of a feature
   map f is a = mean_c |f_c|^p, flattened and L2-normalised; the AT-loss is the mean squared difference
   between the student's and the teacher's maps (the original's; betas 500/1000/1000, p = 2).
   That mean runs over the map's H*W elements of a unit vector, so a term weighs ~beta / (H*W): the
   betas were set on WRN-16-1's 32x32, 16x16 and 8x8 maps (``betas_at_hw`` = 1024, 256, 64), and each
   is scaled by (our map's H*W) / (that H*W) so it weighs as in the original (ResNet-18's last stages at
   16, 8, 4: betas 125/250/250). ``betas_at_hw=null`` uses the betas as given (BackdoorBench, whose
   PreAct-ResNet-18 maps are 4x smaller than the original's with the same betas).
Both phases run NAD's own recipe (conf/finetune/nad.yaml: SGD lr 0.1 -> 0.01 after epoch 2, Nesterov,
batch 64; teacher 10 epochs, student 20).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.core.engine import Recipe, fit
from bench.core.errors import ConfigError
from bench.core.network import capture, stage_ends
from bench.core.schema import Positive, PositiveInt
from bench.defenses._base import DefenderContext, Defense


def attention_map(f: torch.Tensor, p: float) -> torch.Tensor:
    return F.normalize(f.abs().pow(p).mean(1).flatten(1), dim=1)


class AttentionDistillationLoss:
    """CE on the student plus the weighted attention-map distance to a frozen teacher."""

    def __init__(self, teacher: nn.Module, layers: list[str], betas: list[float], p: float) -> None:
        self.teacher, self.layers, self.betas, self.p = teacher.eval(), layers, betas, p
        self.last: dict[str, float] = {}

    def attention_term(self, student_maps: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), capture(self.teacher, self.layers) as teacher_maps:
            self.teacher(x)
        return sum(beta * (attention_map(student_maps[n], self.p) - attention_map(teacher_maps[n], self.p))
                   .pow(2).mean() for n, beta in zip(self.layers, self.betas, strict=True))  # fmt: skip

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with capture(model, self.layers) as student_maps:
            ce = F.cross_entropy(model(x), y)
        at = self.attention_term(student_maps, x)
        self.last = {"ce": ce.item(), "at": float(at.detach())}
        return ce + at


class NAD(Defense):
    def __init__(
        self,
        recipe: Recipe,
        teacher_recipe: Recipe,
        betas: tuple[float, ...] = (500, 1000, 1000),
        p: Positive = 2,
        betas_at_hw: tuple[PositiveInt, ...] | None = (1024, 256, 64),
    ) -> None:
        if not betas or (betas_at_hw is not None and len(betas_at_hw) != len(betas)):
            raise ConfigError(f"betas needs a weight per stage and betas_at_hw one map size per beta; got "
                              f"{betas} and {betas_at_hw}")  # fmt: skip
        self.recipe, self.teacher_recipe, self.betas, self.p = recipe, teacher_recipe, list(betas), p
        self.betas_at_hw = None if betas_at_hw is None else list(betas_at_hw)

    def effective_betas(
        self, model: nn.Module, layers: list[str], image_shape: tuple[int, ...]
    ) -> list[float]:
        """The betas scaled by (H*W of our map) / ``betas_at_hw``, so each term weighs as in the original."""
        if self.betas_at_hw is None:
            return list(self.betas)
        device = next(model.parameters()).device
        was_training = model.training
        with torch.no_grad(), capture(model, layers) as maps:
            model.eval()(torch.zeros(1, *image_shape, device=device))
        model.train(was_training)
        return [b * maps[n].shape[-2] * maps[n].shape[-1] / hw
                for b, n, hw in zip(self.betas, layers, self.betas_at_hw, strict=True)]  # fmt: skip

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        teacher = copy.deepcopy(model)
        fit(teacher, ctx.data, self.teacher_recipe, ctx.device, seed=ctx.seed, desc="nad teacher",
            progress=ctx.progress)  # fmt: skip
        teacher.requires_grad_(False)
        image_shape = tuple(ctx.data.x.shape[1:])
        layers = stage_ends(model, image_shape, len(self.betas))
        betas = self.effective_betas(model, layers, image_shape)
        loss = AttentionDistillationLoss(teacher, layers, betas, self.p)
        fit(model, ctx.data, self.recipe, ctx.device, seed=ctx.seed + 1, desc="nad student",
            progress=ctx.progress, loss_fn=loss)  # fmt: skip
        last = loss.last
        info = {"layers": layers, "betas": [round(b, 4) for b in betas],
                "final_ce": round(last["ce"], 4), "final_at": round(last["at"], 6)}  # fmt: skip
        return model, info
