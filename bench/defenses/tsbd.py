"""TSBD: two-stage backdoor defense (neuron weight change-based reinitialisation, then activeness-aware
fine-tuning), from the seed poster.

1a. Clean unlearning: a copy of the model takes gradient-ASCENT steps on the defender's clean data (SGD,
    ``unlearn_lr``) until its accuracy there is <= ``unlearn_acc`` (or ``unlearn_epochs`` run out). The
    premise: backdoor neurons are the ones whose weights move most when clean behaviour is destroyed.
1b. Neuron weight change NWC_k = sum |W_unlearned[k] - W_original[k]| for every output channel k of every
    convolution except the residual shortcuts, ranked across the whole network. In the ORIGINAL model, the
    top ``n`` share of channels have the ``m`` share of their weights with the largest changes set to 0.
2.  Activeness-aware fine-tuning on the defender data (SGD lr 0.01, 20 epochs): each step takes
    g1 = grad L(theta), theta' = theta + r g1 / ||g1|| (per tensor), g2 = grad L(theta') and steps along
    (1 - a) g1 + a g2.

Choosing n: the official code only sweeps it. Here n is the largest value of ``n_grid`` whose REPAIRED
model (reinitialised, then stage 2 on the defender's training split) keeps the accuracy on the
defender's validation split (``val_ratio`` of its data, per class) within ``tolerance`` of the original
model's, as FP and ANP choose their pruning; no test data is used. The search starts at the largest n
and stops at the first that passes, whose model is the result (n = 0, stage 2 alone, if none does).
The record keeps the NWC statistics, the validation accuracy of every n tried and the n chosen.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from bench.core.engine import Recipe, fit, progress_bar
from bench.core.errors import ConfigError
from bench.core.schema import Fraction, OpenFraction, Positive, PositiveInt, UnitInterval
from bench.defenses._base import DefenderContext, Defense, accuracy, on_device, split_train_val

SHORTCUT_NAMES = ("shortcut", "downsample")


def neuron_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The convolutions whose output channels are TSBD's neurons (residual shortcuts excluded)."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and not any(s in n.split(".") for s in SHORTCUT_NAMES)]  # fmt: skip


def weight_changes(original: nn.Module, unlearned: nn.Module) -> dict[str, torch.Tensor]:
    """|W_unlearned - W_original| per convolution weight (same shape as the weight)."""
    after = dict(unlearned.named_modules())
    return {n: (after[n].weight.detach() - m.weight.detach()).abs() for n, m in neuron_convs(original)}


def neuron_weight_change(changes: dict[str, torch.Tensor]) -> list[tuple[str, int, float]]:
    """(layer, channel, NWC) for every neuron, largest change first."""
    rows = [(n, k, float(v)) for n, d in changes.items() for k, v in enumerate(d.flatten(1).sum(1).tolist())]
    return sorted(rows, key=lambda r: r[2], reverse=True)


@torch.no_grad()
def zero_reinit(
    model: nn.Module,
    changes: dict[str, torch.Tensor],
    ranked: list[tuple[str, int, float]],
    n: float,
    m: float,
) -> int:
    """Zero, in ``model``, the ``m`` share of the weights (by change) pooled over the top ``n`` share of
    neurons; returns how many weights were zeroed."""
    chosen = ranked[: round(n * len(ranked))]
    if not chosen:
        return 0
    pooled = torch.cat([changes[layer][k].flatten() for layer, k, _ in chosen])
    count = round(m * len(pooled))
    if count == 0:
        return 0
    cut = pooled.topk(count).values.min()
    modules = dict(model.named_modules())
    zeroed = 0
    for layer, k, _ in chosen:
        hit = changes[layer][k] >= cut
        modules[layer].weight[k][hit] = 0
        zeroed += int(hit.sum())
    return zeroed


class ActivenessAwareLoss:
    """``loss_fn`` for ``fit`` whose gradient is (1 - a) grad L(theta) + a grad L(theta + r g1/||g1||).

    g1 is taken first; the second loss is evaluated with ``torch.func.functional_call`` at the shifted
    (detached) parameters, so one backward of (1 - a) L(theta) + a L(theta') yields exactly the mix."""

    def __init__(self, radius: float, weight: float) -> None:
        self.radius, self.weight = radius, weight

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad], strict=True)
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        shifted = {n: p + (self.radius * g / g.norm().clamp_min(1e-12)).detach()
                   for n, p, g in zip(names, params, grads, strict=True)}  # fmt: skip
        loss_shifted = F.cross_entropy(functional_call(model, shifted, (x,)), y)
        return (1 - self.weight) * loss + self.weight * loss_shifted


class TSBD(Defense):
    def __init__(
        self,
        recipe: Recipe,
        unlearn_lr: Positive = 1e-4,
        unlearn_acc: UnitInterval = 0.10,
        unlearn_epochs: PositiveInt = 200,
        n_grid: tuple[Fraction, ...] = (0.01, 0.02, 0.05, 0.1, 0.2),
        m: Fraction = 0.7,
        tolerance: UnitInterval = 0.05,
        val_ratio: OpenFraction = 0.2,
        radius: float = 0.05,
        weight: UnitInterval = 0.7,
    ) -> None:
        if not n_grid:
            raise ConfigError("n_grid needs at least one share of neurons to try")
        self.recipe, self.unlearn_lr, self.unlearn_epochs = recipe, unlearn_lr, unlearn_epochs
        self.unlearn_acc, self.n_grid, self.m = unlearn_acc, sorted(n_grid), m
        self.tolerance, self.val_ratio, self.radius, self.weight = tolerance, val_ratio, radius, weight

    def unlearn(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: DefenderContext
    ) -> dict[str, Any]:
        """Gradient ascent on the clean CE until accuracy <= unlearn_acc; the epochs it took."""
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=self.unlearn_lr, momentum=0.9)
        gen = torch.Generator().manual_seed(ctx.seed)
        acc = accuracy(model.eval(), x, y)
        epochs = 0
        for epochs in progress_bar(  # noqa: B007 (the count is reported)
            range(1, self.unlearn_epochs + 1), desc="tsbd unlearn", enabled=ctx.progress
        ):
            model.train()
            for idx in torch.randperm(len(y), generator=gen).to(x.device).split(self.recipe.batch_size):
                loss = -F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            acc = accuracy(model.eval(), x, y)
            if acc <= self.unlearn_acc:
                break
        return {"unlearn_epochs": epochs, "unlearn_acc": round(acc, 4)}

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        train, val = split_train_val(ctx.data, self.val_ratio, ctx.seed)
        x, y = on_device(ctx.data, ctx.device)
        xv, yv = on_device(val, ctx.device)
        model.eval()
        unlearned = copy.deepcopy(model)
        info = self.unlearn(unlearned, x, y, ctx)
        changes = weight_changes(model, unlearned)
        del unlearned
        ranked = neuron_weight_change(changes)
        nwc = torch.tensor([r[2] for r in ranked])
        base_acc = accuracy(model.eval(), xv, yv)
        original = copy.deepcopy(model.state_dict())
        loss_fn = ActivenessAwareLoss(self.radius, self.weight)
        sweep: list[dict[str, float]] = []
        for n in [*sorted(self.n_grid, reverse=True), 0.0]:  # the largest n whose repair stays accurate
            model.load_state_dict(original)
            zeroed = zero_reinit(model, changes, ranked, n, self.m)
            stats = fit(model, train, self.recipe, ctx.device, seed=ctx.seed, desc=f"tsbd fine-tune n={n}",
                        progress=ctx.progress, loss_fn=loss_fn)  # fmt: skip
            acc = accuracy(model.eval(), xv, yv)
            sweep.append({"n": n, "val_acc": round(acc, 4)})
            if acc >= base_acc - self.tolerance:
                break
        chosen = n
        top = ranked[: round(chosen * len(ranked))]
        info.update(
            neurons=len(ranked), n=chosen, neurons_reinitialised=len(top), weights_zeroed=zeroed,
            nwc_mean=round(nwc.mean().item(), 5), nwc_median=round(nwc.median().item(), 5),
            nwc_max=round(nwc.max().item(), 5), top_neurons=[f"{layer}:{k}" for layer, k, _ in top[:10]],
            val_acc_before=round(base_acc, 4), n_sweep=sweep, final_loss=round(stats["loss"], 4),
        )  # fmt: skip
        return model, info
