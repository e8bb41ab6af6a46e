"""RNP (Li et al., ICML 2023, "Reconstructive Neuron Pruning for Backdoor Defense"), written from the paper
and its official code (bboylyg/RNP, ``main.py``; read only).

Unlearn, then recover, then prune:
1. a copy of the model *unlearns* the defender's clean data: SGD (lr ``unlearn_lr``, momentum 0.9, wd 5e-4,
   x0.1 after epochs 10 and 20) ascends the cross-entropy on crop/flip-augmented batches, in train mode,
   until an epoch ends with training accuracy at or below ``clean_threshold`` (at most
   ``unlearn_epochs`` + 1 epochs, as the official loop). The official code clips the gradient norm before
   its backward pass, on zeroed gradients, so it clips nothing; neither do we;
2. the unlearned copy *recovers* through masks on its BatchNorm2d neurons (init 1, scaling each BN weight):
   only the masks learn, SGD lr ``recover_lr`` momentum 0.9 on ``alpha`` x CE over ``recover_epochs``
   epochs of the same data, clipped to [0, 1] after every step;
3. the neurons whose mask ends at or below ``threshold`` are pruned (BN weight zeroed) in the ORIGINAL model,
   lowest mask first, as far as the defender's validation accuracy stays within ``tolerance`` (the
   official code prints a sweep over thresholds read against test data; ANP's rule here, no test data).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.core.engine import augment, progress_bar
from bench.core.schema import OpenFraction, Positive, PositiveInt, UnitInterval
from bench.defenses._base import DefenderContext, Defense, accuracy, on_device, split_train_val
from bench.defenses.anp import BatchNormPerturbation, prune_in_mask_order

UNLEARN_MILESTONES = (10, 20)  # the official MultiStepLR's epochs


class RNP(Defense):
    def __init__(
        self,
        unlearn_lr: Positive = 0.01,
        unlearn_epochs: PositiveInt = 20,
        clean_threshold: UnitInterval = 0.2,
        recover_lr: Positive = 0.2,
        recover_epochs: PositiveInt = 20,
        alpha: UnitInterval = 0.2,
        batch_size: PositiveInt = 128,
        threshold: UnitInterval = 0.2,
        tolerance: UnitInterval = 0.05,
        val_ratio: OpenFraction = 0.2,
    ) -> None:
        self.unlearn_lr, self.unlearn_epochs, self.clean_threshold = (
            unlearn_lr,
            unlearn_epochs,
            clean_threshold,
        )
        self.recover_lr, self.recover_epochs, self.alpha = recover_lr, recover_epochs, alpha
        self.batch_size, self.threshold, self.tolerance, self.val_ratio = (
            batch_size,
            threshold,
            tolerance,
            val_ratio,
        )

    def check_model(self, model: nn.Module) -> None:
        BatchNormPerturbation(model)

    def batches(self, n: int, gen: torch.Generator) -> list[torch.Tensor]:
        return list(torch.randperm(n, generator=gen).split(self.batch_size))

    def unlearn(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[int, float]:
        """Gradient ascent on the clean data until an epoch's training accuracy is at most the threshold:
        the epochs run and that accuracy."""
        opt = torch.optim.SGD(model.parameters(), lr=self.unlearn_lr, momentum=0.9, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(UNLEARN_MILESTONES), gamma=0.1)
        model.train().requires_grad_(True)
        acc = 1.0
        for epoch in range(self.unlearn_epochs + 1):
            correct = 0
            for idx in self.batches(len(x), gen):
                xb = augment(x[idx], 4, True, gen)
                logits = model(xb)
                opt.zero_grad(set_to_none=True)
                (-F.cross_entropy(logits, y[idx])).backward()
                opt.step()
                correct += (logits.argmax(1) == y[idx]).sum().item()
            sched.step()
            acc = correct / len(x)
            if acc <= self.clean_threshold:
                return epoch + 1, acc
        return self.unlearn_epochs + 1, acc

    def recover(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator,
                progress: bool) -> torch.Tensor:  # fmt: skip
        """Masks on the unlearned model's BN neurons, learnt to restore its clean accuracy; flat."""
        model.requires_grad_(False)
        bnp = BatchNormPerturbation(model)
        opt = torch.optim.SGD(bnp.masks, lr=self.recover_lr, momentum=0.9)
        with bnp.attached(batch_stats=True):
            for _ in progress_bar(range(self.recover_epochs), desc="rnp recover", enabled=progress):
                for idx in self.batches(len(x), gen):
                    loss = self.alpha * F.cross_entropy(model(augment(x[idx], 4, True, gen)), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    with torch.no_grad():
                        for m in bnp.masks:
                            m.clamp_(0, 1)
        return bnp.flat_masks()

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        train, val = split_train_val(ctx.data, self.val_ratio, ctx.seed)
        x, y = on_device(train, ctx.device)
        val = on_device(val, ctx.device)
        gen = torch.Generator().manual_seed(ctx.seed)
        model.eval().requires_grad_(False)
        acc0 = accuracy(model, *val)
        unlearned = copy.deepcopy(model)
        epochs, unlearned_acc = self.unlearn(unlearned, x, y, gen)
        masks = self.recover(unlearned, x, y, gen, ctx.progress)
        del unlearned
        candidates, pruned = prune_in_mask_order(
            model, BatchNormPerturbation(model), masks, self.threshold, self.tolerance, val, acc0
        )
        model.eval().requires_grad_(True)
        return model, {
            "unlearn_epochs": epochs,
            "unlearned_train_acc": round(100 * unlearned_acc, 2),
            "neurons": len(masks),
            "below_threshold": len(candidates),
            "pruned": pruned,
            "mask_mean": round(masks.mean().item(), 4),
            "val_acc_before": round(100 * acc0, 4),
            "val_acc_after": round(100 * accuracy(model, *val), 4),
            "action": f"pruned {pruned} neurons" if pruned else "none pruned: model returned unchanged",
        }
