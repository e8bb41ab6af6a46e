"""COMBAT (Huynh et al., AAAI 2024, "COMBAT: Alternated Training for Effective Clean-Label Backdoor
Attacks"; official code VinAIResearch/COMBAT, MIT, read at 0db3940 as a specification).

A clean-label attack whose trigger is an image-specific, low-frequency noise from a generator G:
x' = blur(clip(x + noise_rate/2 * lowpass(G(x)), 0, 1)), ``lowpass`` keeping the first ``ratio`` of the
2-D DCT coefficients per axis and ``blur`` a 3x3 Gaussian with sigma ~ U(0.1, 1) (the official code adds
``noise_rate`` times the noise on images in [-1, 1]; here images are in [0, 1], hence the half).
1. Stage 1 trains G against a surrogate classifier, alternating in every batch: the surrogate steps on
   the batch in which a share ``pc`` of the target-class images carries the trigger, labels unchanged;
   then G steps on CE(surrogate(x'), target) + ``l2_weight`` MSE(x', x) + ``clean_weight``
   CE(clean model(x'), y) (the cell's clean model, so that the trigger alone does not change a clean
   model's answer: the noise must not look like the target class). G is cached; the surrogate discarded.
2. Stage 2 freezes G and trains the victim on the training set where ``poison_rate`` of it, drawn from
   the target class only (the official pc = 0.5 of CIFAR-10's target class is poison_rate 0.05), carries
   the trigger; no label changes.

Departures, named: G is the suite's U-Net (concatenated skips, ``width``/``depth``) where the official
uses its own one with additive skips and 64 channels; the surrogate and the victim train with the cell's
recipe (optimiser, schedule, crop and flip), the official with SGD lr 0.01 and crop, flip and a 10-degree
rotation; stage 2 stores one blurred triggered copy of each chosen image where the official redraws the
blur's sigma every epoch; sigma is drawn per image (the official draws one per batch, the same
distribution), and the test-time trigger draws it from a generator seeded per call, so an image's test
trigger does not depend on what ran before it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.attacks._base import AttackContext, Checkpoint, PoisoningAttack, need_context
from bench.attacks._generator import UNet, step_own
from bench.core.engine import Recipe, TrainingHooks, augment, fit
from bench.core.images import ImageSet, to_float
from bench.core.schema import Fraction, Positive, PositiveInt

SIGMA_RANGE = (0.1, 1.0)  # the official blur's sigma, drawn uniformly


def dct_matrix(n: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix D (n x n): D @ v are the DCT coefficients of v, D.T inverts it."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d


def lowpass_matrix(n: int, ratio: float) -> torch.Tensor:
    """P = D.T M D: keeps the first int(n * ratio) DCT coefficients of a length-n signal."""
    d = dct_matrix(n)
    keep = torch.zeros(n, dtype=torch.float64)
    keep[: int(n * ratio)] = 1
    return (d.T * keep) @ d


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A 3x3 Gaussian blur of each image with its own sigma (reflect padding, as torchvision's)."""
    n, c, h, w = x.shape
    offsets = torch.tensor([-1.0, 0.0, 1.0], device=x.device)
    g = torch.exp(-(offsets**2) / (2 * sigma.to(x.device)[:, None] ** 2))
    g = g / g.sum(1, keepdim=True)  # (n, 3)
    kernel = (g[:, :, None] * g[:, None, :]).repeat_interleave(c, 0)[:, None]  # (n * c, 1, 3, 3)
    padded = F.pad(x.reshape(1, n * c, h, w), (1, 1, 1, 1), mode="reflect")
    return F.conv2d(padded, kernel.to(x.dtype), groups=n * c).reshape(n, c, h, w)


class GeneratorStep(TrainingHooks):
    """Stage 1 around the surrogate's own training (``fit``): before its step, a share ``pc`` of the
    batch's target-class images carries the trigger (labels unchanged); after it, one step of G on the
    batch against the updated surrogate and the clean model. G's SGD follows the official (lr 0.01,
    momentum 0.9, Nesterov, weight decay 5e-4, x0.1 at half and three quarters of training)."""

    def __init__(self, attack: COMBAT, clean: nn.Module, recipe: Recipe, pc: float) -> None:
        self.attack, self.clean, self.recipe, self.pc = attack, clean, recipe, pc
        self.optimizer = torch.optim.SGD(attack.trigger.parameters(), lr=attack.lr, momentum=0.9,
                                         weight_decay=5e-4, nesterov=True)  # fmt: skip
        milestones = [recipe.epochs // 2, recipe.epochs * 3 // 4]
        self.schedule = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones, 0.1)
        self.gen = attack.generator(8)
        self.batch: tuple[nn.Module, torch.Tensor, torch.Tensor] | None = None

    def batch_hook(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.batch = (model, x, y)
        chosen = (y == self.attack.target) & (torch.rand(len(y), generator=self.gen) < self.pc).to(y.device)
        if not chosen.any():
            return x, y
        x = x.clone()
        with torch.no_grad():
            x[chosen] = self.attack.trigger_with(x[chosen], self.gen)
        return x, y

    def after_step(self) -> None:
        assert self.batch is not None
        surrogate, x, y = self.batch
        surrogate.eval()
        triggered = self.attack.trigger_with(x, self.gen)
        seen = augment(triggered, self.recipe.crop_pad, self.recipe.hflip, self.gen)
        target = torch.full_like(y, self.attack.target)
        loss = (F.cross_entropy(surrogate(seen), target)
                + self.attack.l2_weight * 4 * F.mse_loss(triggered, x)  # the official's MSE on [-1, 1] images
                + self.attack.clean_weight * F.cross_entropy(self.clean(seen), y))  # fmt: skip
        step_own(self.optimizer, loss)
        surrogate.train()

    def after_epoch(self, model: nn.Module, epoch: int) -> None:
        self.schedule.step()

    def training_state(self) -> dict[str, Any]:
        return {"generator": self.attack.trigger.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "random": self.gen.get_state()}  # fmt: skip

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.attack.trigger.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.gen.set_state(state["random"])


class COMBAT(PoisoningAttack):
    clean_label = True

    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.05,
        noise_rate: Fraction = 0.08,
        ratio: Fraction = 0.65,
        l2_weight: float = 0.02,
        clean_weight: float = 0.8,
        lr: Positive = 0.01,
        stage1_epochs: PositiveInt = 200,
        width: PositiveInt = 16,
        depth: PositiveInt = 3,
        seed: int = 0,
    ) -> None:
        super().__init__(target, poison_rate, seed)
        self.noise_rate, self.ratio = noise_rate, ratio
        self.l2_weight, self.clean_weight = l2_weight, clean_weight
        self.lr, self.stage1_epochs, self.width, self.depth = lr, stage1_epochs, width, depth

    def build(self, image_shape: torch.Size) -> None:
        c, h, w = image_shape
        with self.seeded(9):
            self.trigger = UNet(c, c, self.width, self.depth, output="tanh")
        self.register_buffer("lowpass_rows", lowpass_matrix(h, self.ratio).float())
        self.register_buffer("lowpass_cols", lowpass_matrix(w, self.ratio).float())

    def trigger_with(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The trigger on images in [0, 1], the blur's sigmas drawn from ``gen``; differentiable in G."""
        noise = self.trigger(2 * x - 1)  # G sees the official's [-1, 1] images
        noise = self.lowpass_rows @ noise @ self.lowpass_cols.T
        triggered = (x + self.noise_rate / 2 * noise).clamp(0, 1)
        lo, hi = SIGMA_RANGE
        return gaussian_blur(triggered, lo + (hi - lo) * torch.rand(len(x), generator=gen))

    @torch.no_grad()
    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.trigger_with(x, self.generator(7))

    def poison(self, train: ImageSet, ctx: AttackContext | None = None) -> ImageSet:
        ctx = need_context(self, ctx)
        targets = int((train.y == self.target).sum())
        pc = min(1.0, self.poison_rate * len(train.y) / max(targets, 1))  # share of the target class

        def stage1(trigger: nn.Module, data: ImageSet, checkpoint: Checkpoint) -> dict[str, float]:
            recipe = dataclasses.replace(ctx.recipe, epochs=self.stage1_epochs)
            clean = ctx.models.clean_classifier().eval().requires_grad_(False)
            surrogate = ctx.models.new_classifier()
            trigger.to(ctx.device).train()
            hooks = GeneratorStep(self, clean, recipe, pc)
            fit(surrogate, data, recipe, ctx.device, hooks=hooks, seed=self.seed,
                desc="combat stage 1 (G + surrogate)", progress=ctx.progress,
                checkpoint=checkpoint)  # fmt: skip
            trigger.eval()
            others = data.y != self.target
            x, y = data.x[others][:1000], data.y[others][:1000]
            return self.stage1_facts(surrogate, clean, x, y, ctx.device)

        spec = {"noise_rate": self.noise_rate, "ratio": self.ratio, "l2_weight": self.l2_weight,
                "clean_weight": self.clean_weight, "lr": self.lr, "epochs": self.stage1_epochs,
                "pc": round(pc, 6), "width": self.width, "depth": self.depth}  # fmt: skip
        ctx.models.network("combat_generator", spec, self.trigger, stage1, resumable=True)  # hours on a CPU
        self.trigger.requires_grad_(False).eval()
        return super().poison(train, ctx)

    @torch.no_grad()
    def stage1_facts(
        self, surrogate: nn.Module, clean: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device
    ) -> dict[str, float]:
        """The surrogate's ASR at the end of stage 1 (G learnt a trigger) and the clean model's accuracy on
        triggered images (the trigger alone does not carry the target class), on non-target images."""
        hits = kept = 0
        for xs, ys in zip(x.split(250), y.split(250), strict=True):
            triggered = self.apply(to_float(xs.to(device)))
            hits += int((surrogate(triggered).argmax(1) == self.target).sum())
            kept += int((clean(triggered).argmax(1) == ys.to(device)).sum())
        n = max(len(y), 1)
        return {
            "stage1_asr": round(100 * hits / n, 2),
            "clean_model_acc_on_triggered": round(100 * kept / n, 2),
        }
