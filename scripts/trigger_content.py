"""How much of an image each trigger keeps: the clean model's accuracy (true labels) on triggered test
images next to its accuracy on the same images untriggered, and their SSIM.

A trigger that keeps the content (a patch, a blend, a warp, a style as DFST means it) leaves the clean
model near its clean accuracy; one that replaces the image leaves it near chance, and the backdoor is then
on a new kind of picture rather than on a feature added to a picture. Prints a markdown table; ``--csv``
also writes attack, clean_model_acc_on_clean, clean_model_acc_on_triggered, ssim.
Usage: python scripts/trigger_content.py experiment=cpu_cifar --attacks badnets blend dfst [--images 1000]
       [--csv results/cpu_cifar/trigger_content.csv]
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch

from bench.attacks._generator import ssim
from bench.core.engine import precision
from bench.core.images import to_float
from bench.run.cell import Cell
from bench.run.metrics import percent, predict
from bench.run.victims import CachedAuxiliaryModels, trigger_of


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*")
    p.add_argument("--attacks", nargs="+", required=True)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--csv", help="also write the rows to this CSV file")
    args = p.parse_args()
    rows = []
    command = " ".join(["python scripts/trigger_content.py", *sys.argv[1:]])
    print(f"`{command}`: the first {args.images} non-target test images, each attack's trigger.\n")
    print("| attack | clean model ACC, clean images | clean model ACC, triggered | SSIM(clean, triggered) |")
    print("|---|---|---|---|")
    for attack in args.attacks:
        ctx = Cell.compose([*args.overrides, f"attack={attack}", "progress=false"])
        data, trigger = trigger_of(ctx)  # the victim's trigger; the victim itself only where it must be
        clean_model = CachedAuxiliaryModels(ctx, data).clean_classifier()
        test = data.test
        keep = test.y != trigger.target
        x, y = test.x[keep][: args.images], test.y[keep][: args.images]
        triggered = trigger.apply_uint8(x)
        device = ctx.device
        with precision(ctx.precision):  # as a cell evaluates
            on_clean = percent(predict(clean_model, x, device) == y)
            on_triggered = percent(predict(clean_model, triggered, device) == y)
        similarity = ssim(to_float(x), to_float(triggered)).item()
        print(f"| {attack} | {on_clean:.2f} | {on_triggered:.2f} | {similarity:.3f} |")
        rows.append({"attack": attack, "clean_model_acc_on_clean": round(on_clean, 2),
                     "clean_model_acc_on_triggered": round(on_triggered, 2),
                     "ssim": round(similarity, 4)})  # fmt: skip
    if args.csv:
        pd.DataFrame(rows).to_csv(args.csv, index=False)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
