"""What one training step of a ``cpu_cifar`` victim costs per memory layout, precision and compilation,
to know what a machine can train before a session is planned on it (a victim is 7,820 steps: 20 epochs of
391 batches). The step is the engine's: SGD (momentum 0.9, weight decay 5e-4) on cross-entropy, a
CIFAR-style ResNet-18 at ``--width``, one random batch of 32x32 images. One untimed warm-up of three steps
(``torch.compile`` compiles there), then ``--steps`` timed. One JSON line per setting, with the processor.
Run it alone on the machine:

    OMP_NUM_THREADS=1 python scripts/train_step_timing.py --layouts contiguous channels_last \
        --precisions fp32 bf16 --compile off on
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch
import torch.nn.functional as F

from bench.models.resnet import resnet18
from bench.run.host import compute_info

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def step_seconds(layout: str, precision: str, compiled: bool, width: float, batch: int, steps: int) -> float:
    """Seconds per training step (forward, backward, SGD update) in one setting."""
    torch.manual_seed(0)
    fmt = LAYOUTS[layout]
    model = resnet18(10, width).to(memory_format=fmt)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    forward = torch.compile(model) if compiled else model

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layouts", nargs="+", choices=sorted(LAYOUTS), default=["channels_last"])
    p.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32"])
    p.add_argument("--compile", nargs="+", choices=["off", "on"], default=["off"])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=15)
    args = p.parse_args()
    machine = compute_info()
    for layout, prec, comp in itertools.product(args.layouts, args.precisions, args.compile):
        seconds = step_seconds(layout, prec, comp == "on", args.width, args.batch_size, args.steps)
        row = {"layout": layout, "precision": prec, "compile": comp, "width": args.width,
               "batch_size": args.batch_size, "steps": args.steps, "s_per_step": round(seconds, 4),
               "victim_min": round(seconds * 7820 / 60, 1), **machine}  # fmt: skip
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
