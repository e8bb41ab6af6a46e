"""I-BAU: Adversarial Unlearning of Backdoors via Implicit Hypergradient (Zeng et al., ICLR 2022).

Minimax unlearning with one UNIVERSAL perturbation delta (one tensor for all inputs). Each of ``rounds``:
1. inner maximisation: one pass of SGD (lr ``inner_lr``) on -CE(f(x + delta), f's own labels)
   + ``penalty`` * ||delta||^2 (``radius``: then projected onto that L2 ball; the original's projection
   is commented out, so the default is none);
2. outer minimisation, per batch: CE of the model on the batch with delta added to a random
   ``patch_ratio`` of its images; its gradient w.r.t. the weights includes the implicit term through
   delta*(weights), approximated by ``K`` fixed-point iterations of the inner map
   delta <- delta - ``fixed_point_lr`` * grad_delta(-CE(f(x + delta), y) + penalty ||delta||^2)
   (vector-Jacobian products only); Adam (lr ``lr``) on the weights.
Original hyperparameters by default (5 rounds, K = 5, outer lr 1e-3, inner SGD lr 10, 1% patching,
batch 100). The model's BatchNorm statistics stay frozen (eval mode).
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.core.engine import progress_bar
from bench.core.schema import Fraction, Positive, PositiveInt
from bench.defenses._base import DefenderContext, Defense, on_device


class IBAU(Defense):
    def __init__(
        self,
        rounds: PositiveInt = 5,
        K: PositiveInt = 5,
        lr: Positive = 1e-3,
        inner_lr: Positive = 10.0,
        fixed_point_lr: Positive = 0.1,
        penalty: float = 1e-3,
        radius: Positive | None = None,
        patch_ratio: Fraction = 0.01,
        batch_size: PositiveInt = 100,
    ) -> None:
        self.rounds, self.K, self.lr, self.batch_size = rounds, K, lr, batch_size
        self.inner_lr, self.fixed_point_lr, self.penalty, self.radius = (
            inner_lr,
            fixed_point_lr,
            penalty,
            radius,
        )
        self.patch_ratio = patch_ratio

    def inner_loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor
    ) -> torch.Tensor:
        return -F.cross_entropy(model(x + delta), y) + self.penalty * delta.pow(2).sum()

    def universal_perturbation(
        self, model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        delta = torch.zeros_like(batches[0][0][:1])
        for x, _ in batches:  # one SGD pass; only delta gets gradients
            with torch.no_grad():
                own = model(x).argmax(1)
            delta.requires_grad_(True)
            (grad,) = torch.autograd.grad(self.inner_loss(model, x, own, delta), delta)
            delta = (delta - self.inner_lr * grad).detach()
        if self.radius is None:
            return delta
        return delta * min(1.0, self.radius / max(delta.norm().item(), 1e-12))

    def patch_mask(self, x: torch.Tensor, rng: random.Random) -> torch.Tensor:
        """1 for the random ``patch_ratio`` of the batch (at least one image) that gets delta, else 0."""
        patch = torch.zeros(len(x), 1, 1, 1, device=x.device)
        patch[rng.sample(range(len(x)), max(1, round(self.patch_ratio * len(x))))] = 1
        return patch

    def hypergradient_step(
        self,
        model: nn.Module,
        params: list[torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        delta: torch.Tensor,
        rng: random.Random,
    ) -> float:
        """Set p.grad = dL_outer/dp plus the implicit term through delta (``implicit_term``)."""
        delta = delta.detach().requires_grad_(True)
        outer = F.cross_entropy(model(x + self.patch_mask(x, rng) * delta), y)
        g_delta, *g_params = torch.autograd.grad(outer, [delta, *params], allow_unused=True)
        implicit = self.implicit_term(model, params, x, y, delta, g_delta)
        for p, g, h in zip(params, g_params, implicit, strict=True):
            parts = [t for t in (g, h) if t is not None]
            p.grad = sum(parts) if parts else None
        return outer.item()

    def implicit_term(
        self,
        model: nn.Module,
        params: list[torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        delta: torch.Tensor,
        g_delta: torch.Tensor,
    ) -> tuple[torch.Tensor | None, ...]:
        """The hypergradient's fixed-point term, (dPhi/dp)^T sum_k (dPhi/ddelta^T)^k dL_outer/ddelta, one
        entry per parameter (None where it does not reach)."""
        mapped = (
            delta
            - self.fixed_point_lr
            * torch.autograd.grad(self.inner_loss(model, x, y, delta), delta, create_graph=True)[0]
        )
        v = torch.zeros_like(delta)
        for _ in range(self.K):  # v = sum_k (dPhi/ddelta^T)^k g_delta
            v = torch.autograd.grad(mapped, delta, grad_outputs=v, retain_graph=True)[0] + g_delta
        return torch.autograd.grad(mapped, params, grad_outputs=v, allow_unused=True)

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        model.eval()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=self.lr)
        x_all, y_all = on_device(ctx.data, ctx.device)
        gen = torch.Generator().manual_seed(ctx.seed)
        rng = random.Random(ctx.seed)
        norms, losses = [], []
        for _ in progress_bar(range(self.rounds), desc="ibau rounds", enabled=ctx.progress):
            order = torch.randperm(len(y_all), generator=gen).to(ctx.device)
            batches = [(x_all[order[i : i + self.batch_size]], y_all[order[i : i + self.batch_size]])
                       for i in range(0, len(order), self.batch_size)]  # fmt: skip
            delta = self.universal_perturbation(model, batches)
            norms.append(round(delta.norm().item(), 4))
            for x, y in batches:
                opt.zero_grad(set_to_none=True)
                loss = self.hypergradient_step(model, params, x, y, delta, rng)
                opt.step()
            losses.append(round(loss, 4))
        return model, {"rounds": self.rounds, "perturbation_l2": norms, "outer_loss": losses,
                       "perturbation_shape": list(delta.shape)}  # fmt: skip
