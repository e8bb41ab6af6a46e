"""Label-consistent backdoor (Turner et al., 2019, "Label-Consistent Backdoor Attacks").

Clean-label: only target-class training images are poisoned and keep their labels. Each is first made
hard to classify by untargeted PGD against an adversarially robust model (so the model must rely on the
trigger to fit it), then a 3x3 checkerboard is stamped in all four corners (as BackdoorBench does).
Without the perturbation the attack mostly fails.

The robust model has the cell's architecture and recipe and is trained with FGSM plus a random start
(Wong et al., 2020) instead of multi-step PGD adversarial training: a documented shortcut that costs
about 2x a clean training. It is cached like any model (``ctx.models``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from bench.attacks._adversarial import FGSMRandomStart, pgd
from bench.attacks._base import AttackContext, Checkpoint, PoisoningAttack, need_context
from bench.core.engine import fit
from bench.core.images import ImageSet, quantize, stamp, to_float
from bench.core.schema import Fraction, PixelLevel, Positive, PositiveInt


class LabelConsistent(PoisoningAttack):
    clean_label = True

    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.08,
        eps: PixelLevel = 8,
        step: Positive = 1.5,
        steps: PositiveInt = 100,
        robust_eps: PixelLevel = 8,
        seed: int = 0,
    ) -> None:
        super().__init__(target, poison_rate, seed)
        self.eps, self.step, self.steps, self.robust_eps = eps, step, steps, robust_eps

    def build(self, image_shape: torch.Size) -> None:
        c, h, w = image_shape
        checker = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, 1]])
        mask, pattern = torch.zeros(1, 1, h, w), torch.zeros(1, c, h, w)
        for top in (0, h - 3):
            for left in (0, w - 3):
                mask[..., top : top + 3, left : left + 3] = 1
                pattern[..., top : top + 3, left : left + 3] = checker
        self.register_buffer("mask", mask)
        self.register_buffer("pattern", pattern)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return stamp(x, self.mask, self.pattern)

    def robust_model(self, ctx: AttackContext) -> nn.Module:
        eps = self.robust_eps / 255

        def train(model: nn.Module, data: ImageSet, checkpoint: Checkpoint) -> None:
            fit(model, data, ctx.recipe, ctx.device, perturb=FGSMRandomStart(eps, 1.25 * eps, self.seed),
                seed=self.seed, desc="robust model (FGSM-RS)", progress=ctx.progress,
                checkpoint=checkpoint)  # fmt: skip

        spec = {"eps": self.robust_eps, "step": 1.25}
        return ctx.models.classifier("fgsm_rs", spec, train, resumable=True)  # hours on a CPU

    def poisoned_images(self, x: torch.Tensor, ctx: AttackContext | None) -> torch.Tensor:
        ctx = need_context(self, ctx)
        model = self.robust_model(ctx).requires_grad_(False)
        xf = to_float(x.to(ctx.device))
        y = torch.full((len(x),), self.target, device=ctx.device)
        hard = pgd(model, xf, y, self.eps / 255, self.step / 255, self.steps, progress=ctx.progress)
        with torch.no_grad():  # how much harder PGD made the images for the robust model
            for key, images in (("robust_acc_clean", xf), ("robust_acc_pgd", hard)):
                self.info[key] = round(100 * (model(images).argmax(1) == y).float().mean().item(), 2)
        return quantize(self.apply(hard.to(self.mask.device))).cpu()
