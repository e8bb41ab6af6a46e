"""Input-aware dynamic backdoor (Nguyen & Tran, NeurIPS 2020, "Input-Aware Dynamic Backdoor Attack").

The trigger depends on the image: x' = x + (G(x) - x) * M(x), with G a pattern generator and M a mask
network (both the shared U-Net), M's output pushed through a steep tanh threshold so it is almost binary.
1. M is trained alone first (``mask_epochs``): a sparsity loss penalises every mask element above
   ``mask_density`` and a diversity loss makes different images get different masks. It is cached as an
   auxiliary network. As in the reference code the penalty is per element, so ``mask_density`` bounds the
   elements rather than fixing the mean the mask settles at; the check that guards against a degenerate
   mask (empty: no trigger; covering the image) is that the mean lies within a factor ``density_factor``
   of ``mask_density``, or the attack stops.
2. Then G trains jointly with the classifier, M frozen: in every batch ``poison_rate`` of the images get
   their own trigger and the target label, ``cross_rate`` get the trigger generated from ANOTHER image
   and keep their true label (cross-trigger samples, which forbid a trigger that works on any image),
   and G also minimises the diversity loss ||x1 - x2|| / ||G(x1) - G(x2)||.
Without the cross-trigger samples and the mask's sparsity this would be a plain generative trigger.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.attacks._base import AttackContext, JointlyTrainedAttack, need_context
from bench.attacks._generator import UNet
from bench.core.engine import progress_bar
from bench.core.errors import ConfigError
from bench.core.images import ImageSet, to_float
from bench.core.schema import Fraction, Positive, PositiveInt, Range

EPS = 1e-7


def threshold(m: torch.Tensor) -> torch.Tensor:
    """IA's near-binary mask: a steep tanh around 0.5."""
    return torch.tanh(m * 20 - 10) / (2 + EPS) + 0.5


def diversity(x1: torch.Tensor, x2: torch.Tensor, out1: torch.Tensor, out2: torch.Tensor) -> torch.Tensor:
    """Mean ratio of input distance to output distance: small when different images get different outputs."""

    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).pow(2).mean(dim=(1, 2, 3)).sqrt()

    return (dist(x1, x2) / (dist(out1, out2) + EPS)).mean()


class InputAware(JointlyTrainedAttack):
    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.1,
        cross_rate: Fraction = 0.1,
        mask_density: Fraction = 0.032,
        density_factor: Annotated[float, Range(1)] = 4.0,
        lambda_div: float = 1.0,
        lambda_norm: float = 100.0,
        lr: Positive = 1e-2,
        mask_epochs: int = 25,
        batch_size: PositiveInt = 128,
        width: PositiveInt = 16,
        seed: int = 0,
    ) -> None:
        super().__init__(target, seed)
        if poison_rate + cross_rate > 0.5:
            raise ConfigError(f"poison_rate + cross_rate must be at most 0.5 (donors come from the other "
                              f"half of the batch), got {poison_rate} + {cross_rate}")  # fmt: skip
        self.poison_rate, self.cross_rate, self.mask_density = poison_rate, cross_rate, mask_density
        self.density_factor, self.lambda_div, self.lambda_norm = density_factor, lambda_div, lambda_norm
        self.lr, self.mask_epochs, self.batch_size, self.width = lr, mask_epochs, batch_size, width

    def build(self, image_shape: torch.Size) -> None:
        c = image_shape[0]
        with self.seeded(4):
            self.pattern_net = UNet(c, c, self.width, output="sigmoid")
            self.mask_net = UNet(c, 1, self.width, output="linear")

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        return threshold(self.mask_net(x))

    def triggered(self, x: torch.Tensor, donor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` carrying the trigger generated from ``donor`` (``donor = x`` for a backdoor sample),
        and the donor's pattern."""
        with torch.no_grad():
            mask = self.mask(donor)
        pattern = self.pattern_net(donor)
        return x + (pattern - x) * mask, pattern

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.triggered(x, x)[0]

    # -- stage 1: the mask network alone -------------------------------------------------------------
    def train_mask(self, net: nn.Module, data: ImageSet, ctx: AttackContext) -> None:
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, betas=(0.5, 0.9))
        sched = torch.optim.lr_scheduler.MultiStepLR(
            opt, [self.mask_epochs * 2 // 5, self.mask_epochs * 4 // 5]
        )
        gen, half = self.generator(5), self.batch_size // 2
        net.to(ctx.device).train()
        for _ in progress_bar(range(self.mask_epochs), desc="ia mask network", enabled=ctx.progress):
            perm = torch.randperm(len(data), generator=gen)
            for i in range(0, len(perm) - self.batch_size + 1, self.batch_size):
                x = to_float(data.x[perm[i : i + self.batch_size]].to(ctx.device))
                x1, x2 = x[:half], x[half:]
                m1, m2 = threshold(net(x1)), threshold(net(x2))
                loss = self.lambda_norm * F.relu(m1 - self.mask_density).mean()
                loss = loss + self.lambda_div * diversity(x1, x2, m1, m2)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()

    def poison(self, train: ImageSet, ctx: AttackContext | None = None) -> ImageSet:
        ctx = need_context(self, ctx)
        spec = {"density": self.mask_density, "epochs": self.mask_epochs, "lr": self.lr, "width": self.width,
                "lambda_div": self.lambda_div, "lambda_norm": self.lambda_norm}  # fmt: skip
        ctx.models.network("ia_mask", spec, self.mask_net, lambda net, data: self.train_mask(net, data, ctx))
        self.mask_net.requires_grad_(False)
        with torch.no_grad():
            probe = to_float(train.x[:512].to(ctx.device))
            density = self.mask(probe).mean().item()
        self.info["mask_density"] = round(density, 4)
        if not self.mask_density / self.density_factor <= density <= self.mask_density * self.density_factor:
            raise ConfigError(
                f"ia: the mask network's mean density {density:.4f} is not within a factor "
                f"{self.density_factor:g} of attack.mask_density={self.mask_density}: a degenerate mask; "
                "train it longer (attack.mask_epochs)"
            )
        return train

    # -- stage 2: G jointly with the classifier ------------------------------------------------------
    def batch_hook(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.joint_optimizer()
        n_bd, n_cross = int(len(x) * self.poison_rate), int(len(x) * self.cross_rate)
        if n_bd == 0:
            return x, y
        donors = x[len(x) - n_cross :] if n_cross else x[:0]  # from the batch's other end: other images
        bd, pattern = self.triggered(x[:n_bd], x[:n_bd])
        cross, donor_pattern = self.triggered(x[n_bd : n_bd + n_cross], donors)
        k = min(n_bd, n_cross)
        if k and self.lambda_div:  # G's diversity term; its gradient joins the classifier's loss gradient
            div = diversity(x[:k], donors[:k], pattern[:k], donor_pattern[:k])
            (self.lambda_div * div).backward(retain_graph=True)
        x = torch.cat([bd, cross, x[n_bd + n_cross :]])
        y = torch.cat([torch.full_like(y[:n_bd], self.target), y[n_bd:]])
        return x, y

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.pattern_net.parameters(), lr=self.lr, betas=(0.5, 0.9))
