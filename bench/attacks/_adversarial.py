"""L-inf adversarial examples on [0, 1] images: PGD for poisoning, FGSM with a random start for
fast adversarial training (Wong et al., 2020, "Fast is better than free"). Shared by the attacks that
need a (robust) model and by defenses that search for perturbations."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.core.engine import progress_bar


def fgsm_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, step: float,
              eps: float) -> torch.Tensor:  # fmt: skip
    """One signed-gradient ascent step on the loss, projected to the eps-ball and the image range.
    Only ``delta`` gets a gradient; model parameters are untouched."""
    delta = delta.detach().requires_grad_(True)
    loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
    (grad,) = torch.autograd.grad(loss, delta)
    delta = (delta + step * grad.sign()).clamp(-eps, eps)
    return ((x + delta).clamp(0, 1) - x).detach()


class FGSMRandomStart:
    """``fit(..., perturb=FGSMRandomStart(eps, step))``: train on one-step adversarial examples
    from a uniform random start (step 1.25 eps in the paper)."""

    def __init__(self, eps: float, step: float, seed: int = 0) -> None:
        self.eps, self.step = eps, step
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        start = (torch.rand(x.shape, generator=self.gen).to(x.device) * 2 - 1) * self.eps
        return x + fgsm_step(model, x, y, start, self.step, self.eps)

    def training_state(self) -> dict[str, Any]:
        return {"generator": self.gen.get_state()}

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["generator"])


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, step: float, steps: int,
        batch_size: int = 256, progress: bool = True) -> torch.Tensor:  # fmt: skip
    """Untargeted PGD (loss ascent on the true labels) from a zero start; model in eval mode."""
    model.eval()
    out = []
    for i in progress_bar(range(0, len(x), batch_size), desc="pgd", enabled=progress):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        delta = torch.zeros_like(xb)
        for _ in range(steps):
            delta = fgsm_step(model, xb, yb, delta, step, eps)
        out.append((xb + delta).clamp(0, 1))
    return torch.cat(out)
