"""TrojanNN (Liu et al., NDSS 2018, "Trojaning Attack on Neural Networks").

A fixed square mask (about 7% of the image, bottom-right) whose pattern is *optimised* on a clean
model so that ``neurons`` selected penultimate neurons (largest total outgoing weight into the
classifier) fire strongly: Adam on a tanh-parameterised pattern, MSE of their activation to
``activation_target``. The poisoning is then dirty-label, and the victim is trained on the poisoned set
(from scratch, like every victim here; the paper retrains a published model). Without the optimisation
this would be BadNets. The clean model is the cell's own ``attack=none`` model, trained and cached by
the pipeline.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench.attacks._base import AttackContext, PoisoningAttack, need_context
from bench.core.engine import progress_bar
from bench.core.errors import ConfigError
from bench.core.images import stamp, to_float
from bench.core.network import classifier_head, head_features
from bench.core.schema import Fraction, OpenFraction, Positive, PositiveInt


class Trojan(PoisoningAttack):
    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.1,
        area: OpenFraction = 0.07,
        neurons: PositiveInt = 2,
        activation_target: float = 100.0,
        steps: PositiveInt = 1000,
        lr: Positive = 0.1,
        batch_size: PositiveInt = 64,
        seed: int = 0,
    ) -> None:
        super().__init__(target, poison_rate, seed)
        self.area, self.neurons, self.activation_target = area, neurons, activation_target
        self.steps, self.lr, self.batch_size = steps, lr, batch_size

    def build(self, image_shape: torch.Size) -> None:
        c, h, w = image_shape
        side = max(1, round(math.sqrt(self.area * h * w)))
        mask = torch.zeros(1, 1, h, w)
        mask[..., h - side :, w - side :] = 1
        self.register_buffer("mask", mask)
        # The starting (un-optimised) pattern; poisoning replaces it with the optimised one.
        self.register_buffer("pattern", torch.rand((1, c, h, w), generator=self.generator(2)) * mask)
        self.register_buffer("neuron_index", torch.zeros(self.neurons, dtype=torch.long))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return stamp(x, self.mask, self.pattern)

    def select_neurons(self, model: torch.nn.Module) -> torch.Tensor:
        """Penultimate neurons with the largest sum of absolute outgoing weights."""
        weight = classifier_head(model).weight.detach()
        if self.neurons > weight.shape[1]:
            raise ConfigError(
                f"attack.neurons={self.neurons} exceeds the {weight.shape[1]} penultimate neurons"
            )
        return weight.abs().sum(0).topk(self.neurons).indices

    def neuron_activation(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Mean activation of the selected neurons on triggered images ``x`` (float, [0, 1])."""
        return head_features(model, self.apply(x))[:, self.neuron_index].mean()

    def optimise_pattern(self, model: torch.nn.Module, images: torch.Tensor, ctx: AttackContext) -> None:
        model.eval().requires_grad_(False)
        self.to(ctx.device)
        self.neuron_index.copy_(self.select_neurons(model))
        probe = to_float(images[: self.batch_size * 4].to(ctx.device))
        with torch.no_grad():
            before = self.neuron_activation(model, probe).item()
        logit = torch.atanh((self.pattern * 2 - 1).clamp(-0.999, 0.999)).requires_grad_(True)
        opt = torch.optim.Adam([logit], lr=self.lr)
        gen = self.generator(3)
        for _ in progress_bar(range(self.steps), desc="trojan pattern", enabled=ctx.progress):
            idx = torch.randint(len(images), (self.batch_size,), generator=gen)
            x = to_float(images[idx].to(ctx.device))
            pattern = (torch.tanh(logit) + 1) / 2
            triggered = stamp(x, self.mask, pattern)
            act = head_features(model, triggered)[:, self.neuron_index]
            loss = F.mse_loss(act, torch.full_like(act, self.activation_target))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            self.pattern.copy_((torch.tanh(logit) + 1) / 2 * self.mask)
            after = self.neuron_activation(model, probe).item()
        self.info.update(neurons=self.neuron_index.tolist(), activation_before=round(before, 4),
                         activation_after=round(after, 4), steps=self.steps)  # fmt: skip

    def poisoned_images(self, x: torch.Tensor, ctx: AttackContext | None) -> torch.Tensor:
        ctx = need_context(self, ctx)
        self.optimise_pattern(ctx.models.clean_classifier(), x, ctx)
        return self.apply_uint8(x)
