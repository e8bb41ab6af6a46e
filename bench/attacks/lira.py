"""LIRA (Doan et al., ICCV 2021, "LIRA: Learnable, Imperceptible and Robust Backdoor Attacks").

x' = clip(x + eps * T(x)), T the shared U-Net with a tanh output, so the trigger is input-specific and
bounded by ``eps`` in L-infinity.
1. Stage 1 learns T against a surrogate classifier of the cell's architecture trained alongside it: in
   every batch T takes one Adam step towards making f(x') the target (the classifier fixed), then the
   classifier takes its step on 0.5 clean CE + 0.5 backdoor CE with T fixed. T is cached as an
   auxiliary network (the surrogate is discarded).
2. Stage 2 freezes T and trains the victim from scratch on the same 0.5 / 0.5 objective: every batch is
   followed by its triggered copy labelled with the target.
With a frozen random T this would not be a learnable trigger; the record keeps the surrogate's ASR at
the end of stage 1 (``attack_info.aux_networks_facts.lira_trigger.stage1_asr``, cached with T) to show
that T learnt one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.attacks._base import Attack, AttackContext, Checkpoint, need_context
from bench.attacks._generator import UNet, step_own
from bench.core.engine import TrainingHooks, fit
from bench.core.images import ImageSet, to_float
from bench.core.schema import Fraction, Positive, PositiveInt


def with_backdoor_copy(
    x: torch.Tensor, y: torch.Tensor, triggered: torch.Tensor, target: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch followed by its triggered copy labelled ``target``: mean CE = 0.5 clean + 0.5 backdoor."""
    return torch.cat([x, triggered]), torch.cat([y, torch.full_like(y, target)])


class TriggerStep(TrainingHooks):
    """Stage 1: before each classifier step, one step of T towards the target on the current classifier."""

    def __init__(self, attack: LIRA, trigger: nn.Module, lr: float) -> None:
        self.attack, self.trigger = attack, trigger
        self.optimizer = torch.optim.Adam(trigger.parameters(), lr=lr)

    def batch_hook(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        triggered = self.attack.perturb(x, self.trigger)
        loss = F.cross_entropy(model(triggered), torch.full_like(y, self.attack.target))
        step_own(self.optimizer, loss)
        with torch.no_grad():
            triggered = self.attack.perturb(x, self.trigger)
        return with_backdoor_copy(x, y, triggered, self.attack.target)

    def training_state(self) -> dict[str, Any]:
        return {"trigger": self.trigger.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.trigger.load_state_dict(state["trigger"])
        self.optimizer.load_state_dict(state["optimizer"])


class LIRA(Attack):
    def __init__(
        self,
        target: int = 0,
        eps: Fraction = 0.01,
        lr: Positive = 1e-4,
        stage1_epochs: int = 10,
        width: PositiveInt = 16,
        seed: int = 0,
    ) -> None:
        super().__init__(target, seed)
        self.eps, self.lr, self.stage1_epochs, self.width = eps, lr, stage1_epochs, width

    def build(self, image_shape: torch.Size) -> None:
        c = image_shape[0]
        with self.seeded(4):
            self.trigger = UNet(c, c, self.width, output="tanh")

    def perturb(self, x: torch.Tensor, trigger: nn.Module) -> torch.Tensor:
        return (x + self.eps * trigger(x)).clamp(0, 1)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.perturb(x, self.trigger)

    def poison(self, train: ImageSet, ctx: AttackContext | None = None) -> ImageSet:
        ctx = need_context(self, ctx)
        recipe = dataclasses.replace(ctx.recipe, epochs=self.stage1_epochs)

        def stage1(trigger: nn.Module, data: ImageSet, checkpoint: Checkpoint) -> dict[str, float]:
            surrogate = ctx.models.new_classifier()
            trigger.to(ctx.device).train()
            hooks = TriggerStep(self, trigger, self.lr)
            fit(surrogate, data, recipe, ctx.device, hooks=hooks, seed=self.seed,
                desc="lira stage 1 (T + surrogate)", progress=ctx.progress,
                checkpoint=checkpoint)  # fmt: skip
            probe = to_float(data.x[data.y != self.target][:1000].to(ctx.device))
            with torch.no_grad():
                hits = sum(int((surrogate(self.perturb(part, trigger)).argmax(1) == self.target).sum())
                           for part in probe.split(250))  # fmt: skip
            return {"stage1_asr": round(100 * hits / max(len(probe), 1), 2)}

        spec = {"eps": self.eps, "lr": self.lr, "epochs": self.stage1_epochs, "width": self.width}
        ctx.models.network("lira_trigger", spec, self.trigger, stage1, resumable=True)  # hours on a CPU
        self.trigger.requires_grad_(False).eval()
        return train

    def batch_hook(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            triggered = self.apply(x)
        return with_backdoor_copy(x, y, triggered, self.target)
