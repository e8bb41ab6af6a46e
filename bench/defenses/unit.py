"""UNIT: backdoor mitigation via automated neural distribution tightening (Cheng, Shen et al., ECCV 2024).

A per-element upper bound sigma after every activation layer, initialised at mean + 4 std of the
defender's training split, is tightened by Adam on CE(clipped model) + alpha * sum_l mean(sigma_l)
with the model frozen in eval mode; the tightest bounds whose validation accuracy stays within eps of
the unclipped model's are kept. Two alpha schedules (``schedule``):
- ``paper`` (Algorithm 1): after every step, halve alpha if the accuracy drop exceeds eps, else double;
- ``code`` (Megum1/UNIT): Neural-Cleanse-style recorder, patience 5 steps, x2 up, /2^1.5 down, reset to
  alpha0 after ``patience`` feasible steps below it.
Deliberate differences from the reference code, each a fix or an engineering change:
- the reference stores the PRE-step bounds against the POST-step validation accuracy (an off-by-one);
  here the bounds that were validated are the ones kept;
- weights get no gradients (only the bounds do), activations run channels_last, and the loop stops early
  once the best feasible bounds have not tightened by ``stop_tol`` (relative) for ``stop_patience``
  steps; ``stop_patience=null`` runs all ``steps``;
- ``augment``: fresh crop/flip per step on the defender's training split (the reference freezes one
  augmented copy at collection time); the validation split is never augmented;
- the defender split is seeded and class-balanced (the reference takes samples in dataset order);
- alpha is kept within alpha0 * 2^(+-40): the paper's unbounded doubling overflows Adam's float32 state.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.core.engine import augment as augment_batch
from bench.core.engine import autocast, progress_bar
from bench.core.errors import ConfigError, check_fraction
from bench.core.images import ImageSet, to_float
from bench.core.schema import OpenFraction, Positive, PositiveInt, UnitInterval
from bench.defenses._base import DefenderContext, Defense, accuracy, split_train_val
from bench.defenses._bounds import (
    BoundedActivation,
    activation_statistics,
    activation_types,
    bound_l1,
    find_activations,
    wrap_activations,
)

Schedule = Literal["paper", "code"]
SCHEDULES = get_args(Schedule)
# alpha stays within alpha0 * 2^(+-40). Algorithm 1 doubles it without limit; after ~80 feasible steps
# alpha^2 * grad^2 overflows Adam's float32 second moment, every update becomes 0 and the bounds freeze.
ALPHA_RANGE_LOG2 = 40


class AlphaSchedule:
    """The weight of the bound regulariser, updated after each step from whether accuracy held."""

    def __init__(self, kind: str, alpha0: float, patience: int) -> None:
        if kind not in SCHEDULES:
            raise ConfigError(f"defense.schedule must be one of {SCHEDULES}, got {kind!r}")
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


class UNIT(Defense):
    def __init__(
        self,
        eps: UnitInterval = 0.02,
        alpha0: float = 1e-3,
        lr: Positive = 1e-3,
        betas: tuple[float, float] = (0.5, 0.9),
        steps: PositiveInt = 300,
        schedule: Schedule = "paper",
        patience: PositiveInt = 5,
        init_std: float = 4.0,
        val_ratio: OpenFraction = 0.2,
        batch_size: PositiveInt | None = None,
        augment: bool = True,
        stop_patience: int | None = 30,
        stop_tol: float = 1e-3,
        activations: tuple[str, ...] = ("ReLU",),
    ) -> None:
        self.eps = check_fraction("defense.eps", eps, low_closed=True)
        self.val_ratio = check_fraction("defense.val_ratio", val_ratio, high_closed=False)
        if steps < 1 or lr <= 0 or alpha0 <= 0:
            raise ConfigError(f"defense.steps, lr and alpha0 must be positive, got {steps}, {lr}, {alpha0}")
        AlphaSchedule(schedule, alpha0, patience)  # validates the schedule name now, not mid-run
        self.alpha0, self.lr, self.betas, self.steps = alpha0, lr, tuple(betas), steps
        self.schedule, self.patience, self.init_std = schedule, patience, init_std
        self.batch_size, self.augment = batch_size, augment
        self.stop_patience, self.stop_tol = stop_patience, stop_tol
        self.types = activation_types(list(activations))

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        device = ctx.device
        train, val = split_train_val(ctx.data, self.val_ratio, ctx.seed)
        layers = find_activations(model, self.types)
        stats = activation_statistics(model, layers, train.x, device)
        model.eval()
        x_val = to_float(val.x.to(device)).contiguous(memory_format=torch.channels_last)
        y_val = val.y.to(device)
        acc0 = accuracy(model, x_val, y_val)
        modules = wrap_activations(model, {n: s["mean"] + self.init_std * s["std"] for n, s in stats.items()})
        for m in modules:
            m.bound.requires_grad_(True)
        frozen = [p for p in model.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            info = self._optimise(model, modules, train, x_val, y_val, acc0, ctx)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        info["val_acc_after"] = round(100 * accuracy(model, x_val, y_val), 4)
        return model, info

    def _optimise(
        self, model: nn.Module, modules: list[BoundedActivation], train: ImageSet, x_val: torch.Tensor,
        y_val: torch.Tensor, acc0: float, ctx: DefenderContext,
    ) -> dict[str, Any]:  # fmt: skip
        device = ctx.device
        bounds = [m.bound for m in modules]
        opt = torch.optim.Adam(bounds, lr=self.lr, betas=self.betas)
        schedule = AlphaSchedule(self.schedule, self.alpha0, self.patience)
        x_all, y_all = train.x.to(device), train.y.to(device)
        batch = self.batch_size or len(y_all)
        gen = torch.Generator().manual_seed(ctx.seed)
        with torch.no_grad():
            init_l1 = float(bound_l1(modules))
            init_feasible = acc0 - accuracy(model, x_val, y_val) <= self.eps
        best = [b.detach().clone() for b in bounds]
        best_l1, best_step = init_l1, 0
        progress_l1, last_progress = init_l1, 0  # early stop: best L1 when it last tightened by stop_tol
        step = 0
        bar = progress_bar(range(1, self.steps + 1), desc="unit", enabled=ctx.progress)
        for step in bar:
            idx = torch.randperm(len(y_all), generator=gen)[:batch].to(device)
            xb = to_float(x_all[idx])
            if self.augment:
                xb = augment_batch(xb, 4, True, gen)
            with autocast(device):
                loss = F.cross_entropy(model(xb.contiguous(memory_format=torch.channels_last)), y_all[idx])
            opt.zero_grad(set_to_none=True)
            (loss + schedule.alpha * bound_l1(modules)).backward()
            opt.step()
            with torch.no_grad():
                acc = accuracy(model, x_val, y_val)
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
        with torch.no_grad():
            for m, b in zip(modules, best, strict=True):
                m.bound = b
        return {
            "schedule": self.schedule,
            "steps_run": step,
            "best_step": best_step,
            "early_stopped": step < self.steps,
            "final_alpha": schedule.alpha,
            "bound_l1_init": round(init_l1, 6),
            "bound_l1_final": round(best_l1, 6),
            "init_within_eps": init_feasible,
            "val_acc_before": round(100 * acc0, 4),
            "layers": len(modules),
            "elements": sum(b.numel() for b in best),
            "train_images": len(y_all),
            "val_images": len(y_val),
        }
