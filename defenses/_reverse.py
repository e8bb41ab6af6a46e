"""Trigger reverse-engineering shared by Neural Cleanse (one search per class) and BNA (one per class
pair): the smallest mask-and-pattern trigger that sends the given images to a class, and the MAD
anomaly index that singles out unusually small ones."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from attacks._base import stamp
from bench.engine import progress_bar

MAD_CONSISTENCY = 1.4826  # makes the MAD a consistent estimator of the std under normality


def anomaly_indices(norms: torch.Tensor) -> torch.Tensor:
    """(median - L1) / (1.4826 * MAD) per class: large positive values are unusually small triggers."""
    median = norms.median()
    mad = MAD_CONSISTENCY * (norms - median).abs().median()
    return (median - norms) / mad.clamp_min(1e-12)


class TriggerSearch:
    """Reverse-engineer one class's minimal trigger on the defender's images."""

    def __init__(self, steps: int, batch_size: int, lr: float, init_cost: float, asr_threshold: float,
                 patience: int) -> None:  # fmt: skip
        self.steps, self.batch_size, self.lr = steps, batch_size, lr
        self.init_cost, self.asr_threshold, self.patience = init_cost, asr_threshold, patience

    def run(self, model: nn.Module, x: torch.Tensor, target: int, gen: torch.Generator,
            progress: bool) -> dict[str, Any]:  # fmt: skip
        device = x.device
        _, c, h, w = x.shape
        mask_logit = torch.zeros(1, 1, h, w, device=device, requires_grad=True)
        pattern_logit = torch.zeros(1, c, h, w, device=device, requires_grad=True)
        opt = torch.optim.Adam([mask_logit, pattern_logit], lr=self.lr, betas=(0.5, 0.9))
        cost, up, down = self.init_cost, 0, 0
        epoch = max(1, math.ceil(len(x) / self.batch_size))
        best: dict[str, Any] = {"l1": math.inf}
        hits = seen = 0
        y = torch.full((self.batch_size,), target, device=device)
        for step in progress_bar(range(1, self.steps + 1), desc=f"nc class {target}", enabled=progress):
            xb = x[torch.randint(len(x), (self.batch_size,), generator=gen).to(device)]
            mask = (torch.tanh(mask_logit) + 1) / 2
            pattern = (torch.tanh(pattern_logit) + 1) / 2
            logits = model(stamp(xb, mask, pattern))
            l1 = mask.sum()
            loss = F.cross_entropy(logits, y) + cost * l1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            hits += int((logits.argmax(1) == target).sum())
            seen += len(xb)
            if step % epoch:
                continue
            asr, hits, seen = hits / seen, 0, 0
            if asr >= self.asr_threshold and l1.item() < best["l1"]:
                best = {"l1": l1.item(), "mask": mask.detach().clone(), "pattern": pattern.detach().clone()}
            up, down = (up + 1, 0) if asr >= self.asr_threshold else (0, down + 1)
            if up >= self.patience:
                cost, up = cost * 2, 0
            elif down >= self.patience:
                cost, down = cost / 2**1.5, 0
        if "mask" not in best:  # never reached the threshold: keep the last trigger, flagged as such
            best = {
                "l1": mask.sum().item(),
                "mask": mask.detach(),
                "pattern": pattern.detach(),
                "failed": True,
            }
        return best
