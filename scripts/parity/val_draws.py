"""How UNIT's eps border moves with the crop/flip draw of its validation images: the cached victim's
accuracy on its defender validation split under many draws of our augmentation and of torchvision's
RandomCrop(32, padding=4) + RandomHorizontalFlip on PIL images (the official UNIT code's), and plain.

    python scripts/parity/val_draws.py --attack sig --defense-seed 1 --draws 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the harness beside this script

import torch  # noqa: E402
import torchvision.transforms as T  # noqa: E402
from harness import load_victim  # noqa: E402
from PIL import Image  # noqa: E402

from bench.core.engine import augment  # noqa: E402
from bench.core.images import to_float  # noqa: E402
from bench.run.cell import Cell  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attack", default="sig")
    p.add_argument("--experiment", default="cpu_cifar")
    p.add_argument("--defense-seed", type=int, default=None, help="the split's seed (default: the cell's)")
    p.add_argument("--draws", type=int, default=30)
    args = p.parse_args()
    overrides = [f"experiment={args.experiment}", f"attack={args.attack}", "defense=unit", "logger=none"]
    cell = Cell.compose([*overrides, "progress=false"])
    victim = load_victim(cell, args.defense_seed)
    model, x, y = victim.model.eval(), victim.defender_val.x, victim.defender_val.y

    def accuracy(images: torch.Tensor) -> float:
        with torch.no_grad():
            return 100 * (model(images).argmax(1) == y).float().mean().item()

    draws = range(args.draws)
    ours = [accuracy(augment(to_float(x), 4, True, torch.Generator().manual_seed(s))) for s in draws]
    official = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
    theirs = []
    for s in draws:
        torch.manual_seed(s)
        pil = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in x]
        theirs.append(accuracy(torch.stack([official(image) for image in pil])))
    plain = accuracy(to_float(x))
    print(f"{args.attack}, split seed {args.defense_seed}, {len(y)} images: plain {plain:.2f}%")
    for name, values in (("ours", ours), ("torchvision (official)", theirs)):
        print(f"{name}: mean {statistics.mean(values):.2f}%, sd {statistics.stdev(values):.2f}, "
              f"min {min(values):.2f}, max {max(values):.2f} over {len(values)} draws")  # fmt: skip


if __name__ == "__main__":
    main()
