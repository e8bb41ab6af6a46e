"""What one iteration of the costly searches costs on a ``cpu_cifar`` victim, per ``defense.gradient``
(issue 41: NC, BNA and ANP at their working lengths, made cheaper without changing their answers): ANP's
mask-learning iteration (batch 128: noise ascent, then the mask step), one step of Neural Cleanse's ten
per-class searches side by side (batch 32 each) and one step of BNA's 90 per-pair searches side by side
(batch 64 each). Each runs the defense's own code for ``--steps`` iterations after one untimed warm-up
iteration. One JSON line per measurement, with the processor and thread count; multiply by a working
length (ANP 2,000 iterations, BNA 500 steps, NC its recorded ``search_steps``) for a run's search time.
Run it alone on the machine:

    OMP_NUM_THREADS=1 python scripts/defense_step_timing.py --attack badnets --steps 20 --gradients fp32 bf16
    python scripts/defense_step_timing.py --defenses nc -- cache_dir=/elsewhere/.cache/models
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable

import torch.nn as nn
from hydra.utils import instantiate

from bench.core.images import to_float
from bench.defenses._base import DefenderContext, split_train_val
from bench.defenses._reverse import search_generators
from bench.defenses.anp import BatchNormPerturbation
from bench.run.cell import Cell
from bench.run.host import compute_info
from bench.run.victims import load_or_train_victim

DEFENSES = ("anp", "nc", "bna")


def timed(run: Callable[[int], object], steps: int) -> float:
    """Seconds per iteration of ``run(steps)``, after ``run(1)`` as a warm-up (allocator, kernels)."""
    run(1)
    start = time.perf_counter()
    run(steps)
    return (time.perf_counter() - start) / steps


def iteration(defense: str, gradient: str, model: nn.Module, ctx: DefenderContext) -> Callable[[int], object]:
    """``run(k)``: k iterations of ``defense``'s search, as its configured code runs them."""
    cfg = Cell.compose(["experiment=cpu_cifar", f"defense={defense}", f"defense.gradient={gradient}"]).cfg
    spec = instantiate(cfg.defense)
    train, _ = split_train_val(ctx.data, 0.2, ctx.seed)
    if defense == "anp":
        x, y = to_float(train.x), train.y

        def anp(k: int) -> None:
            spec.iterations = k
            bnp = BatchNormPerturbation(model)
            with bnp.attached():
                spec.learn_masks(model, bnp, x, y, ctx)

        return anp
    x, y = to_float(ctx.data.x), ctx.data.y
    if defense == "nc":
        targets, pools = list(range(ctx.num_classes)), [x] * ctx.num_classes
    else:
        pairs = [(s, t) for t in range(ctx.num_classes) for s in range(ctx.num_classes) if s != t]
        targets, pools = [t for _, t in pairs], [x[y == s] for s, _ in pairs]

    def search(k: int) -> None:
        spec.search.steps = k
        spec.search.run_many(model, pools, targets, search_generators(ctx.seed, len(targets)), False)

    return search


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--attack", default="badnets")
    p.add_argument("--steps", type=int, default=20, help="iterations timed per variant")
    p.add_argument("--defenses", nargs="+", default=list(DEFENSES), choices=DEFENSES)
    p.add_argument("--gradients", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the victim's cell, e.g. cache_dir=PATH")
    args = p.parse_args()
    cell = Cell.compose(["experiment=cpu_cifar", f"attack={args.attack}", *args.overrides])
    victim = load_or_train_victim(cell)
    ctx = dataclasses.replace(victim.defender_context(), progress=False)
    model = victim.model.eval().requires_grad_(False)
    base = {"attack": args.attack, **compute_info()}
    for defense in args.defenses:
        for gradient in args.gradients:
            t = timed(iteration(defense, gradient, model, ctx), args.steps)
            print(json.dumps({**base, "defense": defense, "gradient": gradient, "steps": args.steps,
                              "seconds_per_iteration": round(t, 4)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
