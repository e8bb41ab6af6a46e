"""Why I-BAU collapses a victim (results/cpu_cifar/grid.md: LIRA x I-BAU ends at 10% ACC, every input
predicted as the target): I-BAU's rounds on one victim, one change at a time, with the outer loss and the
norm of the weights' gradient (direct + implicit term) at every outer batch, and ACC/ASR after the rounds.

Variants: the cell's own configuration (``defense=ibau`` as the grid runs it); BackdoorBench's outer lr
(1e-4 instead of the original's 1e-3); and the implicit term dropped (the outer gradient of the patched
batch only), which says whether the hypergradient's fixed-point term is what diverges.

Usage: python results/cpu_cifar/probes/ibau_probe.py [--rounds N] [OVERRIDE ...]
       (default: experiment=cpu_cifar_table1_v1 attack=lira, all of the cell's rounds)
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

import torch
import torch.nn as nn
from omegaconf import OmegaConf

from bench.defenses.ibau import IBAU
from bench.run.cell import Cell
from bench.run.metrics import evaluate
from bench.run.victims import load_or_train_victim


class LoggedIBAU(IBAU):
    """I-BAU that keeps (outer loss, gradient norm) per outer batch; ``implicit=False`` drops the
    hypergradient's fixed-point term (``IBAU.implicit_term``)."""

    def __init__(self, implicit: bool = True, **params: Any) -> None:
        super().__init__(**params)
        self.implicit = implicit
        self.steps: list[tuple[float, float]] = []

    def implicit_term(
        self, model: nn.Module, params: list[torch.Tensor], *rest: Any
    ) -> tuple[torch.Tensor | None, ...]:
        return super().implicit_term(model, params, *rest) if self.implicit else (None,) * len(params)

    def hypergradient_step(self, model: nn.Module, params: list[torch.Tensor], *rest: Any) -> float:
        loss = super().hypergradient_step(model, params, *rest)
        norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in params if p.grad is not None)).item()
        self.steps.append((loss, norm))
        return loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, help="rounds per variant (default: the cell's)")
    p.add_argument("overrides", nargs="*", default=["experiment=cpu_cifar_table1_v1", "attack=lira"])
    args = p.parse_args()
    cell = Cell.compose([*args.overrides, "defense=ibau", "logger=none", "progress=false"])
    cfg = cell.cfg
    victim = load_or_train_victim(cell)
    triggered = victim.evaluation().triggered
    defender = victim.defender_context()
    params = {k: v for k, v in OmegaConf.to_container(cfg.defense).items() if k != "_target_"}
    params |= {"rounds": args.rounds} if args.rounds else {}
    variants = {
        "the cell's configuration": LoggedIBAU(**params),
        "outer lr 1e-4 (BackdoorBench)": LoggedIBAU(**params | {"lr": 1e-4}),
        "implicit term dropped": LoggedIBAU(implicit=False, **params),
    }
    for name, defense in variants.items():
        model, info = defense.repair(copy.deepcopy(victim.model), defender)
        m = evaluate(model, victim.data.test, triggered, victim.attack.target, victim.cell.device)
        losses = " ".join(f"{loss:.2f}" for loss, _ in defense.steps)
        norms = " ".join(f"{norm:.3g}" for _, norm in defense.steps)
        print(f"{name}: ACC {m['acc']:.2f} ASR {m['asr']:.2f} | perturbation L2 per round "
              f"{info['perturbation_l2']}\n  outer loss per batch: {losses}\n"
              f"  gradient norm per batch: {norms}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
