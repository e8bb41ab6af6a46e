"""STRIP (Gao et al., ACSAC 2019): test-time detection of triggered inputs, the baseline BNA's detector
is compared with.

An input is superimposed on ``n_blends`` random clean defender images (x_b = ``alpha`` x + (1 - alpha) x_d);
a trigger keeps dominating the prediction, so a triggered input's blends have low mean prediction
entropy. The threshold is the ``fpr`` quantile of that entropy on the defender's own held-out clean
images (``val_ratio`` of its data, per class), i.e. a 15% false-positive rate on defender data. STRIP
detects, it does not repair: the classifier's outputs are unchanged and ``detect`` flags inputs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from bench.core.schema import Fraction, OpenFraction, PositiveInt
from bench.defenses._base import DefenderContext, Defense, on_device, split_train_val


class StripDetector(nn.Module):
    """The unchanged classifier plus STRIP's entropy test (blend images and threshold as buffers)."""

    def __init__(
        self, model: nn.Module, blends: torch.Tensor, alpha: float, n_blends: int, seed: int
    ) -> None:
        super().__init__()
        self.model, self.alpha, self.n_blends, self.seed = model, alpha, n_blends, seed
        self.register_buffer("blends", blends)
        self.register_buffer("threshold", torch.tensor(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @torch.no_grad()
    def entropy(self, x: torch.Tensor) -> torch.Tensor:
        """Mean prediction entropy of each input's blends (seeded choice of blend images)."""
        gen = torch.Generator().manual_seed(self.seed)
        pick = torch.randint(len(self.blends), (self.n_blends,), generator=gen).to(self.blends.device)
        total = torch.zeros(len(x), device=x.device)
        for d in self.blends[pick]:
            p = self.model(self.alpha * x + (1 - self.alpha) * d).float().softmax(1)
            total += -(p * p.clamp_min(1e-12).log()).sum(1)
        return total / self.n_blends

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        return self.entropy(x) < self.threshold


class STRIP(Defense):
    def __init__(
        self,
        n_blends: PositiveInt = 100,
        alpha: Fraction = 0.5,
        fpr: OpenFraction = 0.15,
        val_ratio: OpenFraction = 0.2,
    ) -> None:
        self.n_blends, self.alpha, self.fpr, self.val_ratio = n_blends, alpha, fpr, val_ratio

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        blend_set, val = split_train_val(ctx.data, self.val_ratio, ctx.seed)
        blends, _ = on_device(blend_set, ctx.device)
        xv, _ = on_device(val, ctx.device)
        detector = StripDetector(model.eval(), blends, self.alpha, self.n_blends, ctx.seed).to(ctx.device)
        entropy = torch.cat([detector.entropy(part) for part in xv.split(256)])
        detector.threshold.fill_(torch.quantile(entropy, self.fpr).item())
        info = {"threshold": round(detector.threshold.item(), 5), "n_blends": self.n_blends,
                "defender_fpr": round((entropy < detector.threshold).float().mean().item(), 4)}  # fmt: skip
        return detector.eval(), info
