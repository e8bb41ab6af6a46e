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
from bench.defenses._base import Gradient, gradient_autocast

MAD_CONSISTENCY = 1.4826  # makes the MAD a consistent estimator of the std under normality
# Images in one batched forward pass of several searches off the CPU (bounds the activations). On the CPU
# each search gets its own pass: batching saved nothing on one thread (NC 0.826 vs 0.825 s a step) and cost
# BNA 27% more (17.8 vs 14.0 s; results/parity/timing/README.md).
ACCELERATOR_IMAGES_PER_PASS = 512


def search_generators(seed: int, n: int) -> list[torch.Generator]:
    """One generator per search of a ``run_many`` (its batches), seeded from the defense's seed."""
    return [torch.Generator().manual_seed(seed * 1_000_003 + i) for i in range(n)]


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
    ``early_stop_patience`` epochs (None: never). ``images_per_pass`` bounds one forward pass of
    ``run_many`` (None: one search a pass on the CPU, ``ACCELERATOR_IMAGES_PER_PASS`` elsewhere); it
    changes how the searches are grouped, never what each computes. ``gradient=bf16`` (a speed option;
    the original is float32) runs the model's forward and backward under bf16 autocast; the stamped
    images, the mask and pattern and their Adam stay float32."""

    def __init__(self, steps: int, batch_size: int, lr: float, init_cost: float, asr_threshold: float,
                 patience: int, epoch_steps: int | None = None, early_stop_patience: int | None = None,
                 cost_from_zero: bool = True, gradient: Gradient = "fp32",
                 images_per_pass: int | None = None) -> None:  # fmt: skip
        self.steps, self.batch_size, self.lr, self.gradient = steps, batch_size, lr, gradient
        self.images_per_pass = images_per_pass
        self.cost_from_zero = cost_from_zero
        self.init_cost, self.asr_threshold, self.patience = init_cost, asr_threshold, patience
        self.epoch_steps, self.early_stop_patience = epoch_steps, early_stop_patience

    def run(self, model: nn.Module, x: torch.Tensor, target: int, gen: torch.Generator,
            progress: bool) -> dict[str, Any]:  # fmt: skip
        """One search: images ``x``, towards class ``target``, its batches drawn from ``gen``."""
        return self.run_many(model, [x], [target], [gen], progress, desc=f"nc class {target}")[0]

    def run_many(self, model: nn.Module, pools: list[torch.Tensor], targets: list[int],
                 gens: list[torch.Generator], progress: bool, desc: str = "trigger search",
                 ) -> list[dict[str, Any]]:  # fmt: skip
        """Several independent searches stepped together, ``searches_per_pass`` to a forward pass (on the
        CPU by default one each): search k draws its batches from ``pools[k]`` with ``gens[k]`` and has its
        own mask, pattern, Adam, cost schedule, best trigger and early stop (a stopped search drops out of
        the batch). The model is in eval mode, so an image's output does not depend on the others' in the
        batch: each search takes the steps it takes alone."""
        device = pools[0].device
        _, c, h, w = pools[0].shape
        searches = [Search(t, g, (c, h, w), device, self) for t, g in zip(targets, gens, strict=True)]
        epochs = [self.epoch_steps or max(1, math.ceil(len(pool) / self.batch_size)) for pool in pools]
        active = list(range(len(searches)))
        step = 0
        per_pass = self.searches_per_pass(device)
        for step in progress_bar(range(1, self.steps + 1), desc=desc, enabled=progress):
            for first in range(0, len(active), per_pass):
                part = active[first : first + per_pass]
                self.forward_backward(model, [searches[i] for i in part], [pools[i] for i in part], device)
            for i in list(active):  # each search's epoch: its images / batch, or epoch_steps
                searches[i].opt.step()
                searches[i].steps = step
                if step % epochs[i] == 0 and searches[i].end_epoch():
                    active.remove(i)
            if not active:
                break
        return [search.result() for search in searches]

    def searches_per_pass(self, device: torch.device) -> int:
        """How many searches share one forward pass: ``images_per_pass`` // batch size, at least one."""
        default = self.batch_size if device.type == "cpu" else ACCELERATOR_IMAGES_PER_PASS
        return max(1, (self.images_per_pass or default) // self.batch_size)

    def forward_backward(
        self, model: nn.Module, searches: list[Search], pools: list[torch.Tensor], device: torch.device
    ) -> None:
        """One batched pass for ``searches``: each one's loss CE(f(x'), its target) + cost * |m|_1 on its
        own batch, backpropagated into its own mask and pattern; its hits and step state kept."""
        bs = self.batch_size
        xb = torch.stack([search.batch(pool, bs) for search, pool in zip(searches, pools, strict=True)])
        masks = torch.stack([search.mask() for search in searches])
        patterns = torch.stack([search.pattern() for search in searches])
        with gradient_autocast(device, self.gradient):
            logits = model(stamp(xb, masks[:, None], patterns[:, None]).flatten(0, 1)).float()
        y = torch.tensor([search.target for search in searches], device=device).repeat_interleave(bs)
        ce = F.cross_entropy(logits, y, reduction="none").view(len(searches), bs).mean(1)
        l1 = masks.flatten(1).sum(1)
        cost = torch.tensor([search.schedule.cost for search in searches], device=device)
        for search in searches:
            search.opt.zero_grad(set_to_none=True)
        (ce + cost * l1).sum().backward()  # each search's parameters get their own term's gradient
        hits = (logits.argmax(1) == y).view(len(searches), bs).sum(1).tolist()
        for j, search in enumerate(searches):
            search.hits += hits[j]
            search.seen += bs
            search.last = (l1[j].item(), masks[j].detach(), patterns[j].detach())


class Search:
    """One trigger search's state inside ``TriggerSearch.run_many``: its tanh-parameterised mask and
    pattern with their own Adam (lr, betas 0.5/0.9), its cost schedule and its best successful trigger."""

    def __init__(
        self, target: int, gen: torch.Generator, shape: tuple[int, int, int], device: torch.device,
        spec: TriggerSearch,
    ) -> None:  # fmt: skip
        c, h, w = shape
        self.target, self.gen, self.spec = target, gen, spec
        self.mask_logit = torch.zeros(1, 1, h, w, device=device, requires_grad=True)
        self.pattern_logit = torch.zeros(1, c, h, w, device=device, requires_grad=True)
        self.opt = torch.optim.Adam([self.mask_logit, self.pattern_logit], lr=spec.lr, betas=(0.5, 0.9))
        self.schedule = CostSchedule(spec.init_cost, spec.asr_threshold, spec.patience, spec.cost_from_zero)
        self.best: dict[str, Any] = {"l1": math.inf}
        self.hits = self.seen = self.stale = self.steps = 0
        self.last: tuple[float, torch.Tensor, torch.Tensor] = (math.inf, torch.empty(0), torch.empty(0))

    def batch(self, pool: torch.Tensor, size: int) -> torch.Tensor:
        """``size`` images of ``pool`` drawn with replacement from this search's generator."""
        return pool[torch.randint(len(pool), (size,), generator=self.gen).to(pool.device)]

    def mask(self) -> torch.Tensor:
        return ((torch.tanh(self.mask_logit) + 1) / 2)[0]

    def pattern(self) -> torch.Tensor:
        return ((torch.tanh(self.pattern_logit) + 1) / 2)[0]

    def end_epoch(self) -> bool:
        """Score the epoch (the step's mask, before its update, as the original); True: the search stops."""
        asr, self.hits, self.seen = self.hits / self.seen, 0, 0
        l1, mask, pattern = self.last
        if asr >= self.spec.asr_threshold and l1 < self.best["l1"]:
            self.best = {"l1": l1, "mask": mask[None].clone(), "pattern": pattern[None].clone()}
            self.stale = 0
        elif self.best["l1"] < math.inf:
            self.stale += 1
        self.schedule.update(asr)
        patience = self.spec.early_stop_patience
        return patience is not None and self.schedule.moved_both_ways and self.stale >= patience

    def result(self) -> dict[str, Any]:
        best = self.best
        if "mask" not in best:  # never reached the threshold: keep the last trigger, flagged as such
            l1, mask, pattern = self.last
            best = {"l1": l1, "mask": mask[None], "pattern": pattern[None], "failed": True}
        return {**best, "steps": self.steps, "final_cost": self.schedule.cost}


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
