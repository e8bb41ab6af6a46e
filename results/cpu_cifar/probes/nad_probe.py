"""Why NAD collapses on cpu_cifar (results/cpu_cifar/defenses.md): NAD's two phases on the BadNets victim,
one change at a time, with ACC and ASR after each and the student's per-epoch loss.

The teacher: NAD's recipe (lr 0.1 for 2 epochs, then 0.01; scripts' earlier probe measured BackdoorBench's
lr 0.01 too: it keeps the backdoor). Students, all from that teacher: NAD's recipe at lr 0.01 instead of
0.1, and NAD's recipe in fp32 (no bf16 autocast); the cell itself (`defense=nad`) is NAD's recipe in bf16.

Usage: python results/cpu_cifar/probes/nad_probe.py [OVERRIDE ...]
       (default: experiment=cpu_cifar_v1 attack=badnets)
"""

from __future__ import annotations

import copy
import sys

import torch.nn as nn
from hydra.utils import instantiate

from bench.core.engine import fit, precision
from bench.core.network import stage_ends
from bench.defenses.nad import AttentionDistillationLoss
from bench.run.cell import Cell
from bench.run.metrics import evaluate
from bench.run.victims import load_or_train_victim

STUDENTS = {"student lr 0.01": (0.01, None), "NAD's recipe, fp32": (None, "fp32")}  # (lr, precision)


def main() -> None:
    overrides = sys.argv[1:] or ["experiment=cpu_cifar_v1", "attack=badnets"]
    cell = Cell.compose([*overrides, "defense=nad", "logger=none", "progress=false"])
    cfg = cell.cfg
    victim = load_or_train_victim(cell)
    triggered = victim.evaluation().triggered
    defender = victim.defender_context()
    device = victim.cell.device

    def report(name: str, model: nn.Module, extra: str = "") -> None:
        m = evaluate(model, victim.data.test, triggered, victim.attack.target, device)
        print(f"{name}: ACC {m['acc']:.2f} ASR {m['asr']:.2f}{extra}", flush=True)

    teacher = copy.deepcopy(victim.model)
    with precision(cell.precision):
        fit(teacher, defender.data, instantiate(cfg.defense.teacher_recipe), device, seed=cfg.seed,
            progress=False)  # fmt: skip
        report("teacher (NAD's recipe)", teacher)
    teacher.requires_grad_(False)
    layers = stage_ends(victim.model, tuple(defender.data.x.shape[1:]), len(cfg.defense.betas))
    for name, (lr, numeric) in STUDENTS.items():
        with precision(numeric or cell.precision):
            student = copy.deepcopy(victim.model)
            recipe = instantiate(cfg.defense.recipe, **({"lr": lr} if lr else {}))
            loss = AttentionDistillationLoss(teacher, layers, list(cfg.defense.betas), cfg.defense.p)
            out = fit(student, defender.data, recipe, device, seed=cfg.seed + 1, progress=False, loss_fn=loss)
            curve = " ".join(f"{v:.2f}" for v in out["loss_per_epoch"])
            last = f"final CE {loss.last['ce']:.2f} AT {loss.last['at']:.3f}"
            report(f"student, {name}", student, f" | {last} | loss per epoch: {curve}")


if __name__ == "__main__":
    main()
