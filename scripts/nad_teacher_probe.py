"""Why NAD collapses on cpu_cifar (results/cpu_cifar/defenses.md): the BadNets victim fine-tuned as NAD's
teacher phase does, with NAD's lr 0.1 and with BackdoorBench's 0.01; prints ACC and ASR of each teacher.

Usage: python scripts/nad_teacher_probe.py [OVERRIDE ...]   (default: experiment=cpu_cifar attack=badnets)
"""

from __future__ import annotations

import copy
import sys

from hydra.utils import instantiate

from bench.context import CellContext
from bench.core.engine import fit
from bench.entry import compose_config
from bench.metrics import evaluate
from bench.victims import load_or_train_victim


def main() -> None:
    overrides = sys.argv[1:] or ["experiment=cpu_cifar", "attack=badnets"]
    cfg = compose_config([*overrides, "defense=nad", "logger=none", "progress=false"])
    victim = load_or_train_victim(CellContext.of(cfg))
    triggered = victim.evaluation().triggered
    defender = victim.defender_context()
    for lr in (0.1, 0.01):
        teacher = copy.deepcopy(victim.model)
        recipe = instantiate(cfg.defense.teacher_recipe, lr=lr)
        fit(teacher, defender.data, recipe, victim.ctx.device, seed=cfg.seed, progress=False)
        m = evaluate(teacher, victim.data.test, triggered, victim.attack.target, victim.ctx.device)
        print(f"teacher lr {lr}: ACC {m['acc']:.2f} ASR {m['asr']:.2f}", flush=True)


if __name__ == "__main__":
    main()
