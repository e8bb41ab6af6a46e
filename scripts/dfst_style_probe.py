"""What DFST's sunrise style does to the picture while its CycleGAN trains: SSIM(x, G(x)) on test images
every few epochs of BackdoorVault's loop and, once a clean model exists, that model's accuracy on G(x)
(issue 36's targets: SSIM >= 0.5, accuracy >= 60%), to see which share of the 3,000 epochs keeps the
content DFST's style is meant to keep, and what a CPU length gives.

The training is the attack's own (``DFST.poison`` through the model cache: same seeds, same entry, same
checkpoints, so a killed probe resumes and a finished one leaves the network the DFST victims then use);
the probe only watches it: every ``--every`` epochs it copies the A->B generator to ``--out`` and scores
it (scoring draws from no generator the training uses).

    python scripts/dfst_style_probe.py experiment=cpu_cifar --out DIR [--every 25] [--images 1000]
    python scripts/dfst_style_probe.py experiment=cpu_cifar --out DIR --score   # + the clean model's accuracy
The length is the attack's ``style_steps`` (epochs: 3,000 x aux_scale); ``--score`` trains the cell's clean
model on a cache miss and writes DIR/probe.csv and a markdown table of every snapshot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra.utils import instantiate

from bench.attacks import AttackContext, Checkpoint
from bench.attacks._generator import ssim
from bench.attacks.dfst import DFST
from bench.core.engine import precision
from bench.core.images import DataBundle, to_float
from bench.run.cell import Cell
from bench.run.metrics import percent, predict
from bench.run.victims import CachedAuxiliaryModels, data_and_attack


class Snapshots:
    """A Checkpoint that also snapshots and scores the generator every ``every`` epochs."""

    def __init__(self, checkpoint: Checkpoint, every: int, score: Any) -> None:
        self.checkpoint, self.every, self.score = checkpoint, every, score
        self.epoch = 0

    def load(self) -> dict[str, Any] | None:
        state = self.checkpoint.load()
        self.epoch = state["epochs"] if state is not None else 0
        return state

    def due(self) -> bool:
        self.epoch += 1
        return self.epoch % self.every == 0 or self.checkpoint.due()

    def save(self, state: dict[str, Any]) -> None:
        self.epoch = state["epochs"]
        if self.epoch % self.every == 0:
            self.score(self.epoch)
        self.checkpoint.save(state)


class ProbedModels(CachedAuxiliaryModels):
    """The cell's auxiliary models, with the DFST style training watched by Snapshots."""

    def __init__(self, cell: Cell, data: DataBundle, every: int, score: Any) -> None:
        super().__init__(cell, data)
        self.every, self.score = every, score

    def network(self, name, spec, module, train, *, data_only=False, resumable=False):  # type: ignore[no-untyped-def]
        if not resumable:
            raise SystemExit(f"error: expected DFST's resumable style network, got {name}")

        def watched(gan: torch.nn.Module, data: Any, checkpoint: Checkpoint) -> Any:
            return train(gan, data, Snapshots(checkpoint, self.every, self.score))

        return super().network(name, spec, module, watched, data_only=data_only, resumable=True)


def test_images(data: DataBundle, target: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    keep = data.test.y != target
    return data.test.x[keep][:n], data.test.y[keep][:n]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="Hydra overrides (attack=dfst, style=sunrise added)")
    p.add_argument("--out", type=Path, required=True, help="folder for the generator snapshots and the table")
    p.add_argument("--every", type=int, default=25, help="epochs between snapshots")
    p.add_argument("--images", type=int, default=1000, help="non-target test images scored")
    p.add_argument("--score", action="store_true", help="score every snapshot with the cell's clean model")
    args = p.parse_args()
    cell = Cell.compose([*args.overrides, "attack=dfst", "attack.style=sunrise", "progress=false"])
    data, attack = data_and_attack(cell)
    assert isinstance(attack, DFST)
    x, y = test_images(data, attack.target, args.images)
    folder = args.out / "snapshots"
    folder.mkdir(parents=True, exist_ok=True)

    def snapshot(epoch: int) -> None:
        torch.save(attack.style.g_ab.state_dict(), folder / f"g_ab_epoch{epoch:04d}.pt")
        with torch.no_grad():
            styled = attack.style.stylise(to_float(x))
        print(f"epoch {epoch}: SSIM {ssim(to_float(x), styled).item():.3f} (unquantised)", flush=True)

    if not args.score:
        recipe = instantiate(cell.cfg.train)
        models = ProbedModels(cell, data, args.every, snapshot)
        attack.poison(data.train, AttackContext(cell.device, recipe, models, progress=False))
        snapshot(attack.style_steps)
        return
    clean = CachedAuxiliaryModels(cell, data).clean_classifier()
    rows = []
    with torch.no_grad(), precision(cell.precision):
        on_clean = percent(predict(clean, x, cell.device) == y)
        for path in sorted(folder.glob("g_ab_epoch*.pt")):
            attack.style.g_ab.load_state_dict(torch.load(path, weights_only=True))
            styled = attack.apply_uint8(x)
            acc = percent(predict(clean, styled, cell.device) == y)
            rows.append({"epoch": int(path.stem.removeprefix("g_ab_epoch")),
                         "ssim": round(ssim(to_float(x), to_float(styled)).item(), 4),
                         "clean_model_acc_on_styled": round(acc, 2)})  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "probe.csv", index=False)
    command = " ".join(["python scripts/dfst_style_probe.py", *sys.argv[1:]])
    print(f"`{command}`: {args.images} non-target test images (the clean model: {on_clean:.2f}% unstyled).\n")
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
