"""UNIT: backdoor mitigation via automated neural distribution tightening (Cheng, Shen et al., ECCV 2024).

A per-element upper bound sigma after every activation layer, initialised at mean + 4 std of the
defender's training split, is tightened by Adam on CE(clipped model) + alpha * sum_l mean(sigma_l)
with the model frozen in eval mode; the tightest bounds whose validation accuracy stays within eps of
the unclipped model's are kept. Reference code: Megum1/UNIT (MIT); ``scripts/parity`` runs it unchanged
on our victims beside this module (results/parity). Two alpha schedules (``schedule``):
- ``paper`` (Algorithm 1): after every step, halve alpha if the accuracy drop exceeds eps, else double;
- ``code`` (Megum1/UNIT): Neural-Cleanse-style recorder, patience 5 steps, x2 up, /2^1.5 down, reset to
  alpha0 after ``patience`` feasible steps below it.
As the reference: all ``steps`` run; the best bounds start from "none yet", so the first feasible bounds
are kept even when the initial ones break eps (when no step is feasible, the last bounds are returned and
``found_feasible`` is false, as the reference "uses the last one"); the bounds are optimised, clipped and
validated in float32 whatever ``precision`` says (bf16's resolution near bounds of 1-4 is coarser than
one Adam step; ``gradient=bf16``, a speed option measured in results/parity, runs only each step's
forward/backward under bf16 autocast, the bounds, their update and the validation staying float32);
``augment=frozen_all`` (the default, the reference's collection) draws one crop/flip of the training
split before the statistics and uses it for every step, and one of the validation split after it
(``frozen``: the training split's only; results/parity measures both). Deliberate differences from the
reference, each a fix or an option:
- the reference stores the PRE-step bounds against the POST-step validation accuracy (an off-by-one);
  here the bounds that were validated are the ones kept (the initial bounds are a candidate too);
- weights get no gradients (only the bounds do) and activations run channels_last;
- ``stop_patience`` (off by default): stop once the best feasible bounds have not tightened by
  ``stop_tol`` (relative) for that many steps. It changes the answer (Blend: 9.41% ASR after 82 steps,
  6.61% after 184), so it is a named speed option, never the default;
- ``augment=per_step`` (fresh crop/flip every step, statistics on the plain images) and ``none``;
- the defender split is seeded and class-balanced (the reference takes samples in dataset order);
- alpha is kept within alpha0 * 2^(+-40): the paper's unbounded doubling overflows Adam's float32 state.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.core.engine import augment as augment_batch
from bench.core.engine import progress_bar
from bench.core.images import ImageSet, to_float
from bench.core.schema import OpenFraction, Positive, PositiveInt, UnitInterval
from bench.defenses._base import (
    DefenderContext,
    Defense,
    Gradient,
    accuracy,
    gradient_autocast,
    split_train_val,
)
from bench.defenses._bounds import (
    BoundedActivation,
    activation_statistics,
    activation_types,
    bound_l1,
    find_activations,
    wrap_activations,
)

Schedule = Literal["paper", "code"]
# frozen: one crop/flip of the training split drawn before the statistics, used at every step;
# frozen_all: the same, and one of the validation split too (the reference draws one crop/flip of every
# defender image it collects, its validation images included); per_step: a fresh crop/flip every step,
# statistics on the plain images; none: plain images throughout
Augment = Literal["frozen", "frozen_all", "per_step", "none"]
# alpha stays within alpha0 * 2^(+-40). Algorithm 1 doubles it without limit; after ~80 feasible steps
# alpha^2 * grad^2 overflows Adam's float32 second moment, every update becomes 0 and the bounds freeze.
ALPHA_RANGE_LOG2 = 40


class AlphaSchedule:
    """The weight of the bound regulariser, updated after each step from whether accuracy held."""

    def __init__(self, kind: str, alpha0: float, patience: int) -> None:
        self.kind, self.alpha0, self.alpha, self.patience = kind, alpha0, alpha0, patience
        self.set_counter = self.up_counter = self.down_counter = 0

    def update(self, feasible: bool) -> None:
        self._step(feasible)
        self.alpha = min(
            max(self.alpha, self.alpha0 * 2.0**-ALPHA_RANGE_LOG2), self.alpha0 * 2.0**ALPHA_RANGE_LOG2
        )

    def _step(self, feasible: bool) -> None:
        if self.kind == "paper":
            self.alpha = self.alpha * 2 if feasible else self.alpha / 2
            return
        if self.alpha < self.alpha0 and feasible:
            self.set_counter += 1
            if self.set_counter >= self.patience:
                self.alpha, self.up_counter, self.down_counter = self.alpha0, 0, 0
        else:
            self.set_counter = 0
        self.up_counter, self.down_counter = (
            (self.up_counter + 1, 0) if feasible else (0, self.down_counter + 1)
        )
        if self.up_counter >= self.patience:
            self.up_counter, self.alpha = 0, self.alpha * 2
        if self.down_counter >= self.patience:
            self.down_counter, self.alpha = 0, self.alpha / 2**1.5


# Images per forward/backward pass of a step. The step's gradient is the whole batch's (the reference's
# full-batch step, up to the order of float sums), but a 2,000-image pass allocates gigabytes of
# activations afresh every step, and the page faults cost more than the arithmetic (measured on the CPU:
# 6.2 s a step in chunks of 250 against 17-27 s in one pass, one thread).
CHUNK = 256


def accumulate_ce_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, gradient: Gradient = "fp32"
) -> None:
    """Add the gradient of the mean cross-entropy over ``x`` to the bounds' ``.grad``, in ``CHUNK``s;
    ``gradient=bf16``: the forward and backward under bf16 autocast (the bounds' gradient stays float32)."""
    for i in range(0, len(y), CHUNK):
        with gradient_autocast(x.device, gradient):
            logits = model(x[i : i + CHUNK])
        loss = F.cross_entropy(logits.float(), y[i : i + CHUNK], reduction="sum") / len(y)
        loss.backward()


class UNIT(Defense):
    def __init__(
        self,
        eps: UnitInterval = 0.02,
        alpha0: Positive = 1e-3,
        lr: Positive = 1e-3,
        betas: tuple[float, float] = (0.5, 0.9),
        steps: PositiveInt = 300,
        schedule: Schedule = "paper",
        patience: PositiveInt = 5,
        init_std: float = 4.0,
        val_ratio: OpenFraction = 0.2,
        batch_size: PositiveInt | None = None,
        augment: Augment = "frozen_all",
        stop_patience: PositiveInt | None = None,
        stop_tol: float = 1e-3,
        activations: tuple[str, ...] = ("ReLU",),
        gradient: Gradient = "fp32",
    ) -> None:
        self.eps, self.val_ratio = eps, val_ratio
        self.alpha0, self.lr, self.betas, self.steps = alpha0, lr, tuple(betas), steps
        self.schedule, self.patience, self.init_std = schedule, patience, init_std
        self.batch_size, self.augment = batch_size, augment
        self.stop_patience, self.stop_tol = stop_patience, stop_tol
        self.types = activation_types(list(activations))
        self.gradient = gradient

    def check_model(self, model: nn.Module) -> None:
        find_activations(model, self.types)

    def draw_images(
        self, train: ImageSet, val: ImageSet, gen: torch.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training and validation images as the optimisation sees them (float, channels_last), with
        the crop/flip of ``augment`` drawn once from ``gen``: the training split's first (the reference's
        collection augments every image it keeps)."""
        x_train, x_val = to_float(train.x.to(device)), to_float(val.x.to(device))
        if self.augment in ("frozen", "frozen_all"):
            x_train = augment_batch(x_train, 4, True, gen)
        if self.augment == "frozen_all":
            x_val = augment_batch(x_val, 4, True, gen)
        cl = torch.channels_last
        return x_train.contiguous(memory_format=cl), x_val.contiguous(memory_format=cl)

    def initial_bounds(
        self, model: nn.Module, x_train: torch.Tensor, device: torch.device
    ) -> dict[str, torch.Tensor]:
        """sigma0 = mean + ``init_std`` std of each bounded layer's output over ``x_train``, per element."""
        stats = activation_statistics(model, find_activations(model, self.types), x_train, device)
        return {name: s["mean"] + self.init_std * s["std"] for name, s in stats.items()}

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        device = ctx.device
        gen = torch.Generator().manual_seed(ctx.seed)
        train, val = split_train_val(ctx.data, self.val_ratio, ctx.seed)
        x_train, x_val = self.draw_images(train, val, gen, device)
        sigma0 = self.initial_bounds(model, x_train, device)
        model.eval()
        y_val = val.y.to(device)
        acc0 = accuracy(model, x_val, y_val, fp32=True)
        modules = wrap_activations(model, sigma0)
        for m in modules:
            m.bound.requires_grad_(True)
        frozen = [p for p in model.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            info = self._optimise(model, modules, x_train, train.y.to(device), x_val, y_val, acc0, gen, ctx)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        info["val_acc_after"] = round(100 * accuracy(model, x_val, y_val, fp32=True), 4)
        return model, info

    def _batch(
        self, x_train: torch.Tensor, y_train: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's images: the whole (frozen or plain) training split, or a random batch of it, with a
        fresh crop/flip under ``augment=per_step``."""
        if self.batch_size is not None and self.batch_size < len(y_train):
            idx = torch.randperm(len(y_train), generator=gen)[: self.batch_size].to(x_train.device)
            x_train, y_train = x_train[idx], y_train[idx]
        if self.augment == "per_step":
            x_train = augment_batch(x_train, 4, True, gen).contiguous(memory_format=torch.channels_last)
        return x_train, y_train

    def _optimise(
        self, model: nn.Module, modules: list[BoundedActivation], x_train: torch.Tensor,
        y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, acc0: float, gen: torch.Generator,
        ctx: DefenderContext,
    ) -> dict[str, Any]:  # fmt: skip
        bounds = [m.bound for m in modules]
        opt = torch.optim.Adam(bounds, lr=self.lr, betas=self.betas)
        schedule = AlphaSchedule(self.schedule, self.alpha0, self.patience)
        with torch.no_grad():
            init_l1 = float(bound_l1(modules))
            init_feasible = acc0 - accuracy(model, x_val, y_val, fp32=True) <= self.eps
        # the tightest feasible bounds so far; none yet unless the initial ones are feasible (the reference
        # starts from best_reg = 1/EPSILON and so keeps the first feasible bounds whatever sigma0 was)
        best = [b.detach().clone() for b in bounds] if init_feasible else None
        best_l1, best_step = (init_l1, 0) if init_feasible else (float("inf"), None)
        progress_l1, last_progress = best_l1, 0  # early stop: best L1 when it last tightened by stop_tol
        step = 0
        bar = progress_bar(range(1, self.steps + 1), desc="unit", enabled=ctx.progress)
        for step in bar:
            xb, yb = self._batch(x_train, y_train, gen)
            opt.zero_grad(set_to_none=True)
            accumulate_ce_gradient(model, xb, yb, self.gradient)
            (schedule.alpha * bound_l1(modules)).backward()
            opt.step()
            with torch.no_grad():
                acc = accuracy(model, x_val, y_val, fp32=True)
                l1 = float(bound_l1(modules))
            feasible = acc0 - acc <= self.eps
            if feasible and l1 < best_l1:
                best = [b.detach().clone() for b in bounds]
                best_l1, best_step = l1, step
                if best_l1 < progress_l1 * (1 - self.stop_tol):
                    progress_l1, last_progress = best_l1, step
            schedule.update(feasible)
            bar.set_postfix(acc=f"{100 * acc:.1f}", l1=f"{l1:.3f}", alpha=f"{schedule.alpha:.2g}")
            if self.stop_patience is not None and step - last_progress >= self.stop_patience:
                break
        bar.close()
        for i, m in enumerate(modules):  # the best bounds, else the last ones, as plain buffers
            m.bound = m.bound.detach() if best is None else best[i]
        with torch.no_grad():
            final_l1 = float(bound_l1(modules))
        return {
            "schedule": self.schedule,
            "steps_run": step,
            "best_step": best_step,
            "found_feasible": best is not None,
            "early_stopped": step < self.steps,
            "final_alpha": schedule.alpha,
            "bound_l1_init": round(init_l1, 6),
            "bound_l1_final": round(final_l1, 6),
            "init_within_eps": init_feasible,
            "val_acc_before": round(100 * acc0, 4),
            "layers": len(modules),
            "elements": sum(m.bound.numel() for m in modules),
            "train_images": len(y_train),
            "val_images": len(y_val),
        }
