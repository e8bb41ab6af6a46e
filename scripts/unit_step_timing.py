"""Where a UNIT step's time goes on a ``cpu_cifar`` victim (issue 35's speed goal: UNIT within 2x FT's
``defense_s``, reached by cheaper steps, never by fewer): the full-batch cross-entropy gradient over the
2,000 training images in passes of each ``--chunks`` size (``bench.defenses.unit.CHUNK``; 2000 is one
pass, as the reference code takes it), the validation pass, and one epoch of FT's fine-tuning for the
ratio. One JSON line per measurement, with the processor and thread count. Run it alone on the machine:

    OMP_NUM_THREADS=1 python scripts/unit_step_timing.py --attack badnets --steps 5 --chunks 256 2000
    OMP_NUM_THREADS=1 python scripts/unit_step_timing.py --steps 5 --chunks 256 --gradients fp32 bf16
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch

from bench.core.engine import Recipe, fit, precision
from bench.core.images import to_float
from bench.defenses import unit as unit_module
from bench.defenses._base import accuracy, split_train_val
from bench.defenses._bounds import wrap_activations
from bench.run.cell import Cell
from bench.run.host import compute_info
from bench.run.victims import load_or_train_victim


def seconds(fn, repeat: int) -> float:  # noqa: ANN001
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--attack", default="badnets")
    p.add_argument("--steps", type=int, default=5, help="steps timed per variant")
    p.add_argument("--chunks", type=int, nargs="+", default=[256, 2000])
    p.add_argument(
        "--gradients", nargs="+", default=["fp32"], choices=["fp32", "bf16"], help="defense.gradient values"
    )
    args = p.parse_args()
    ctx = Cell.compose(["experiment=cpu_cifar_v1", f"attack={args.attack}", "defense=unit", "logger=none"])
    victim = load_or_train_victim(ctx)  # UNIT optimises its bounds in float32 whatever the run's precision
    defender = victim.defender_context()
    train, val = split_train_val(defender.data, 0.2, defender.seed)
    model = victim.model.eval()
    x = to_float(train.x).contiguous(memory_format=torch.channels_last)
    x_val = to_float(val.x).contiguous(memory_format=torch.channels_last)
    modules = wrap_activations(model, unit_module.UNIT().initial_bounds(model, x, ctx.device))
    for m in modules:
        m.bound.requires_grad_(True)
    for param in model.parameters():
        param.requires_grad_(False)
    base = {"attack": args.attack, "train_images": len(x), **compute_info()}
    for gradient, chunk in itertools.product(args.gradients, args.chunks):
        unit_module.CHUNK = chunk
        t = seconds(lambda g=gradient: unit_module.accumulate_ce_gradient(model, x, train.y, g), args.steps)
        print(json.dumps({**base, "part": "gradient", "gradient": gradient, "chunk": chunk,
                          "seconds_per_step": round(t, 3)}))  # fmt: skip
    t = seconds(lambda: accuracy(model, x_val, val.y, fp32=True), args.steps)
    print(json.dumps({**base, "part": "validation", "images": len(x_val), "seconds_per_step": round(t, 3)}))
    # FT's recipe (conf/finetune/sgd.yaml), one epoch over the defender's data, in the run's precision
    recipe = Recipe(epochs=1, batch_size=256, lr=0.01, momentum=0.9, weight_decay=5e-4)
    fresh = load_or_train_victim(ctx).model
    with precision(ctx.precision):
        stats = fit(fresh, defender.data, recipe, ctx.device, progress=False)
    print(
        json.dumps(
            {**base, "part": "ft_epoch", "images": len(defender.data), "seconds": round(stats["seconds"], 3)}
        )
    )


if __name__ == "__main__":
    main()
