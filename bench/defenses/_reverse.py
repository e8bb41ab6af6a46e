"""Trigger reverse-engineering shared by Neural Cleanse (one search per class) and BNA (one per class
pair): the smallest mask-and-pattern trigger that sends the given images to a class, and the MAD
anomaly index that singles out unusually small ones."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.core.engine import progress_bar
from bench.core.images import stamp

MAD_CONSISTENCY = 1.4826  # makes the MAD a consistent estimator of the std under normality


def anomaly_indices(norms: torch.Tensor) -> torch.Tensor:
    """(median - L1) / (1.4826 * MAD) per class: large positive values are unusually small triggers."""
    median = norms.median()
    mad = MAD_CONSISTENCY * (norms - median).abs().median()
    return (median - norms) / mad.clamp_min(1e-12)


class TriggerSearch:
    """Reverse-engineer one class's minimal trigger on the defender's images, as Neural Cleanse's code
    (bolunwang/backdoor, visualizer.py) does: Adam on CE(f(x'), target) + cost * |m|_1 over tanh-
    parameterised mask and pattern. The cost starts at 0 and is set to ``init_cost`` once the reversed
    trigger has reached ``asr_threshold`` for ``patience`` epochs (``cost_from_zero``; else it starts at
    ``init_cost``); from then on it is multiplied by 2 after
    ``patience`` epochs at or above the threshold and divided by 2^1.5 after ``patience`` epochs below it.
    An epoch is ``epoch_steps`` batches (the original: 1000 samples in batches of 32, 31 batches; None: one
    pass over the images). The smallest successful mask is kept; the search stops after ``steps`` batches,
    or early once the cost has moved both ways and the best mask has not shrunk for
    ``early_stop_patience`` epochs (None: never)."""

    def __init__(self, steps: int, batch_size: int, lr: float, init_cost: float, asr_threshold: float,
                 patience: int, epoch_steps: int | None = None, early_stop_patience: int | None = None,
                 cost_from_zero: bool = True) -> None:  # fmt: skip
        self.steps, self.batch_size, self.lr = steps, batch_size, lr
        self.cost_from_zero = cost_from_zero
        self.init_cost, self.asr_threshold, self.patience = init_cost, asr_threshold, patience
        self.epoch_steps, self.early_stop_patience = epoch_steps, early_stop_patience

    def run(self, model: nn.Module, x: torch.Tensor, target: int, gen: torch.Generator,
            progress: bool) -> dict[str, Any]:  # fmt: skip
        device = x.device
        _, c, h, w = x.shape
        mask_logit = torch.zeros(1, 1, h, w, device=device, requires_grad=True)
        pattern_logit = torch.zeros(1, c, h, w, device=device, requires_grad=True)
        opt = torch.optim.Adam([mask_logit, pattern_logit], lr=self.lr, betas=(0.5, 0.9))
        schedule = CostSchedule(self.init_cost, self.asr_threshold, self.patience, self.cost_from_zero)
        epoch = self.epoch_steps or max(1, math.ceil(len(x) / self.batch_size))
        best: dict[str, Any] = {"l1": math.inf}
        hits = seen = stale = 0
        y = torch.full((self.batch_size,), target, device=device)
        step = 0
        for step in progress_bar(range(1, self.steps + 1), desc=f"nc class {target}", enabled=progress):
            xb = x[torch.randint(len(x), (self.batch_size,), generator=gen).to(device)]
            mask = (torch.tanh(mask_logit) + 1) / 2
            pattern = (torch.tanh(pattern_logit) + 1) / 2
            logits = model(stamp(xb, mask, pattern))
            l1 = mask.sum()
            loss = F.cross_entropy(logits, y) + schedule.cost * l1
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
                stale = 0
            elif best["l1"] < math.inf:
                stale += 1
            schedule.update(asr)
            patience = self.early_stop_patience
            if patience is not None and schedule.moved_both_ways and stale >= patience:
                break
        if "mask" not in best:  # never reached the threshold: keep the last trigger, flagged as such
            best = {
                "l1": mask.sum().item(),
                "mask": mask.detach(),
                "pattern": pattern.detach(),
                "failed": True,
            }
        return {**best, "steps": step, "final_cost": schedule.cost}


class CostSchedule:
    """Neural Cleanse's weight of the mask norm, updated once per epoch from the trigger's success."""

    def __init__(self, init_cost: float, threshold: float, patience: int, from_zero: bool = True) -> None:
        self.init_cost, self.threshold, self.patience = init_cost, threshold, patience
        self.cost = 0.0 if from_zero else init_cost
        self.set_counter = self.up_counter = self.down_counter = 0
        self.up = self.down = False

    @property
    def moved_both_ways(self) -> bool:
        return self.up and self.down

    def update(self, asr: float) -> None:
        success = asr >= self.threshold
        if self.cost == 0 and success:
            self.set_counter += 1
            if self.set_counter >= self.patience:
                self.cost, self.up_counter, self.down_counter = self.init_cost, 0, 0
                self.up = self.down = False
        else:
            self.set_counter = 0
        if success:
            self.up_counter, self.down_counter = self.up_counter + 1, 0
        else:
            self.up_counter, self.down_counter = 0, self.down_counter + 1
        if self.up_counter >= self.patience:
            self.up_counter, self.cost, self.up = 0, self.cost * 2, True
        elif self.down_counter >= self.patience:
            self.down_counter, self.cost, self.down = 0, self.cost / 2**1.5, True
