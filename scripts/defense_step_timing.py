"""What one iteration of the costly searches costs on a ``cpu_cifar`` victim, per ``defense.gradient``
(issue 41: NC, BNA and ANP at their working lengths, made cheaper without changing their answers): ANP's
mask-learning iteration (batch 128: noise ascent, then the mask step), one step of Neural Cleanse's ten
per-class searches side by side (batch 32 each) and one step of BNA's 90 per-pair searches side by side
(batch 64 each). Each runs the defense's own code for ``--steps`` iterations after one untimed warm-up
iteration. NC and BNA are timed both ways ``--searches`` names, through ``defense.images_per_pass``:
``batched`` (512 images a pass, the default off the CPU) and ``one_by_one`` (one search a pass, the
default on the CPU), so one run measures what the batching saves. One JSON line per
measurement, with the processor and thread count; multiply by a working length (ANP 2,000 iterations, BNA
500 steps, NC its recorded ``search_steps``) for a run's search time. Run it alone on the machine:

    OMP_NUM_THREADS=1 python scripts/defense_step_timing.py --attack badnets --steps 20 --gradients fp32 bf16
    python scripts/defense_step_timing.py --experiment cpu_cifar_study --gradients fp32 -- precision=fp32
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

from bench.defenses._base import DefenderContext, on_device, split_train_val
from bench.defenses._reverse import ACCELERATOR_IMAGES_PER_PASS
from bench.defenses.anp import BatchNormPerturbation
from bench.run.cell import Cell
from bench.run.host import compute_info
from bench.run.victims import load_or_train_victim

DEFENSES = ("anp", "nc", "bna")
SEARCHES = ("batched", "one_by_one")


def timed(run: Callable[[int], object], steps: int) -> float:
    """Seconds per iteration of ``run(steps)``, after ``run(1)`` as a warm-up (allocator, kernels)."""
    run(1)
    start = time.perf_counter()
    run(steps)
    return (time.perf_counter() - start) / steps


def iteration(defense: str, gradient: str, searches: str, experiment: str, model: nn.Module,
              ctx: DefenderContext) -> Callable[[int], object]:  # fmt: skip
    """``run(k)``: k iterations of ``defense``'s search, through the method its ``repair`` calls, on the
    data it gives it (ANP: the training split; NC and BNA: all the defender's images)."""
    overrides = [f"experiment={experiment}", f"defense={defense}", f"defense.gradient={gradient}"]
    spec = instantiate(Cell.compose(overrides).cfg.defense)
    if defense == "anp":
        x, y = on_device(split_train_val(ctx.data, spec.val_ratio, ctx.seed)[0], ctx.device)

        def anp(k: int) -> None:
            spec.iterations = k
            bnp = BatchNormPerturbation(model)
            with bnp.attached():
                spec.learn_masks(model, bnp, x, y, ctx)

        return anp
    x, y = on_device(ctx.data, ctx.device)
    # batched: the accelerator's grouping (512 images a pass); one_by_one: one search a pass, the CPU's
    batched = searches == "batched"
    spec.search.images_per_pass = ACCELERATOR_IMAGES_PER_PASS if batched else spec.search.batch_size

    def search(k: int) -> None:
        spec.search.steps = k
        model.requires_grad_(False)  # as repair leaves it for the search (BNA's detection restores it)
        if defense == "nc":
            spec.reverse_triggers(model, x, ctx)
        else:
            spec.detect_pairs(model, x, y, ctx)

    return search


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--attack", default="badnets")
    p.add_argument("--experiment", default="cpu_cifar", help="the victim's and the defenses' experiment")
    p.add_argument("--steps", type=int, default=20, help="iterations timed per variant")
    p.add_argument("--defenses", nargs="+", default=list(DEFENSES), choices=DEFENSES)
    p.add_argument("--gradients", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--searches", nargs="+", default=list(SEARCHES), choices=SEARCHES,
                   help="NC's and BNA's searches batched (the defense's path) or one by one")  # fmt: skip
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the victim's cell, e.g. cache_dir=PATH")
    args = p.parse_args()
    cell = Cell.compose([f"experiment={args.experiment}", f"attack={args.attack}", *args.overrides])
    victim = load_or_train_victim(cell)
    ctx = dataclasses.replace(victim.defender_context(), progress=False)
    model = victim.model.eval().requires_grad_(False)
    base = {"attack": args.attack, **compute_info()}
    for defense in args.defenses:
        for gradient in args.gradients:
            for searches in args.searches if defense != "anp" else ["batched"]:
                run = iteration(defense, gradient, searches, args.experiment, model, ctx)
                t = timed(run, args.steps)
                what = {"defense": defense, "gradient": gradient, "searches": searches, "steps": args.steps}
                line = {**base, "experiment": args.experiment, **what, "seconds_per_iteration": round(t, 4)}
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
