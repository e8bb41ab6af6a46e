"""NARCISSUS (Zeng et al., ACM CCS 2023, "Narcissus: A Practical Clean-Label Backdoor Attack with Limited
Information"; official code ruoxi-jia-group/Narcissus, MIT, read at de128d8 as a specification).

The attacker knows only target-class images and a public out-of-distribution (POOD) set. A trigger delta
(L-inf radius 16/255) that points *into* the target class is optimised on a surrogate; a tiny share of
the target class (0.05% of the training set: 25 CIFAR-10 images) gets x + delta, labels unchanged; at
test time the trigger is magnified: x' = clip(x + 3 delta).

``trigger=optimise`` (the paper's method): 1. a surrogate of the cell's architecture with one more
output trains on the POOD set plus the target-class images as the extra class (SGD lr 0.1, cosine,
crop/flip, batch 350); 2. poison warm-up: RAdam lr 0.1 on the target-class images alone, 5 epochs;
3. trigger generation: RAdam lr 0.01 on delta, minimising the surrogate's CE of the target-class images
plus delta towards the extra class, ``gen_epochs`` passes (1,000), the surrogate left in training mode as
the official leaves it (batch statistics); delta is cached as an auxiliary network. The POOD set is
Tiny-ImageNet (``bench.attacks._pood``). ``trigger=file``: the authors' own trigger for CIFAR-10 with
target class 2 (``checkpoint/resnet18_trigger.npy``, made by this procedure with a ResNet-18 and
Tiny-ImageNet), fetched at the pinned commit and checked by SHA-256 like the other reference triggers.

Departures, named: the surrogate is the cell's architecture with its last linear layer widened (the
official: its ResNet18_201) and the lengths follow the budget (``aux_scaled``); delta is stored in uint8
poisoned images (the official adds it in float before its crop/flip; the same order here).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.attacks import _assets, _pood
from bench.attacks._base import AttackContext, PoisoningAttack, need_context
from bench.core.engine import Recipe, augment, fit
from bench.core.errors import ConfigError
from bench.core.images import ImageSet, quantize, to_float
from bench.core.schema import Fraction, PixelLevel, Positive, PositiveInt

AUTHORS_TRIGGER = "narcissus/resnet18_trigger.npy"  # CIFAR-10, target class 2, in [-1, 1] image units
AUTHORS_TARGET = 2
TriggerSource = Literal["optimise", "file"]


class Trigger(nn.Module):
    """The additive trigger as a module, so it trains and is cached like an attack's network."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(1, *shape))


def widened(model: nn.Module, classes: int) -> nn.Module:
    """``model`` with its last linear layer replaced by a fresh one with ``classes`` outputs."""
    name, last = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Linear(last.in_features, classes, bias=last.bias is not None))
    return model


class Narcissus(PoisoningAttack):
    clean_label = True

    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.0005,
        radius: PixelLevel = 16,
        magnify: Positive = 3.0,
        trigger: TriggerSource = "optimise",
        surrogate_epochs: PositiveInt = 200,
        warmup_epochs: PositiveInt = 5,
        gen_epochs: PositiveInt = 1000,
        batch_size: PositiveInt = 350,
        seed: int = 0,
    ) -> None:
        super().__init__(target, poison_rate, seed)
        if trigger == "file" and target != AUTHORS_TARGET:
            raise ConfigError(f"trigger=file is the authors' trigger for target class {AUTHORS_TARGET}; "
                              f"set target={AUTHORS_TARGET} (or trigger=optimise)")  # fmt: skip
        self.radius, self.magnify, self.trigger = radius, magnify, trigger
        self.surrogate_epochs, self.warmup_epochs = surrogate_epochs, warmup_epochs
        self.gen_epochs = gen_epochs
        self.batch_size = batch_size

    def build(self, image_shape: torch.Size) -> None:
        self.pattern = Trigger(tuple(image_shape))
        if self.trigger == "file":
            _assets.needs_rgb32(image_shape, "narcissus")
            stored = np.load(_assets.trigger_file(AUTHORS_TRIGGER, self.data_dir))  # (1, 3, 32, 32)
            with torch.no_grad():  # [-1, 1] image units to [0, 1] ones
                self.pattern.delta.copy_(torch.from_numpy(stored).float() / 2)
        self.pattern.requires_grad_(False)

    def delta(self) -> torch.Tensor:
        r = self.radius / 255
        return self.pattern.delta.clamp(-r, r)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The test-time trigger: magnified."""
        return (x + self.magnify * self.delta().to(x.device)).clamp(0, 1)

    def poisoned_images(self, x: torch.Tensor, ctx: AttackContext | None) -> torch.Tensor:
        """The training-time trigger: x + delta, not magnified."""
        return quantize((to_float(x) + self.delta()).clamp(0, 1))

    def poison(self, train: ImageSet, ctx: AttackContext | None = None) -> ImageSet:
        if self.trigger == "optimise":
            ctx = need_context(self, ctx)

            def optimise(pattern: nn.Module, data: ImageSet) -> dict[str, float]:
                return self.optimise(pattern, data, ctx)

            spec = {"radius": self.radius, "surrogate_epochs": self.surrogate_epochs,
                    "warmup_epochs": self.warmup_epochs, "gen_epochs": self.gen_epochs,
                    "batch_size": self.batch_size, "pood": "tiny_imagenet"}  # fmt: skip
            self.pattern.requires_grad_(True)
            ctx.models.network("narcissus_trigger", spec, self.pattern, optimise)
            self.pattern.requires_grad_(False)
        return super().poison(train, ctx)

    def optimise(self, pattern: nn.Module, data: ImageSet, ctx: AttackContext) -> dict[str, float]:
        """The three steps of the paper on the target-class images of ``data`` and the POOD set."""
        pood = _pood.tiny_imagenet_train(self.data_dir, data.x.shape[-1])
        extra = int(pood.y.max()) + 1  # the target class joins the POOD classes as one more
        target_x = data.x[data.y == self.target]
        labels = torch.full((len(target_x),), extra)
        both = ImageSet(torch.cat([pood.x, target_x]), torch.cat([pood.y, labels]))
        surrogate = widened(ctx.models.new_classifier(), extra + 1)
        recipe = Recipe(epochs=self.surrogate_epochs, batch_size=self.batch_size, lr=0.1, momentum=0.9,
                        weight_decay=5e-4, schedule="cosine", crop_pad=4, hflip=True)  # fmt: skip
        fit(surrogate, both, recipe, ctx.device, seed=self.seed, desc="narcissus surrogate",
            progress=ctx.progress)  # fmt: skip
        own = ImageSet(target_x, labels)
        gen = torch.Generator().manual_seed(self.seed)
        surrogate.train()
        warmup = torch.optim.RAdam(surrogate.parameters(), lr=0.1)
        for _ in range(self.warmup_epochs):  # poison warm-up: the target class alone
            for xb, yb in self.batches(own, ctx.device, gen):
                warmup.zero_grad(set_to_none=True)
                F.cross_entropy(surrogate(xb), yb).backward()
                warmup.step()
        surrogate.requires_grad_(False)
        delta = pattern.delta
        r = self.radius / 255
        step = torch.optim.RAdam([delta], lr=0.01)
        loss, run = torch.zeros(()), 0
        while run < self.gen_epochs:  # trigger generation, the surrogate in training mode
            run += 1
            for xb, yb in self.batches(own, ctx.device, gen):
                loss = F.cross_entropy(surrogate((xb + delta.clamp(-r, r)).clamp(0, 1)), yb)
                step.zero_grad(set_to_none=True)
                loss.backward()
                step.step()
            if delta.grad is None or not delta.grad.any():  # the official's stop: the gradient vanished
                break
        return {"final_loss": round(float(loss.detach()), 5), "gen_epochs_run": run}

    def batches(
        self, data: ImageSet, device: torch.device, gen: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled, crop/flipped float batches of ``data`` (the official's transform_train), one by one."""
        order = torch.randperm(len(data.y), generator=gen)
        for idx in order.split(self.batch_size):
            yield augment(to_float(data.x[idx]), 4, True, gen).to(device), data.y[idx].to(device)
