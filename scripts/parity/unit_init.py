"""Where UNIT starts against its eps border, per crop/flip draw: the victim's validation accuracy with the
initial bounds (mean + 4 std of the augmented training split) against without them, for the statistics
and the validation images each drawn by our augmentation or by the official code's own collection
(Megum1/UNIT's ``prepare_defense_samples`` under ``seed_torch``), crossed. Draw ``d`` of each side is
the one that side's run with defense seed ``d`` uses.

    python scripts/parity/unit_init.py --attack instagram --official UNIT_CHECKOUT --draws 0 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the harness beside this script

import torch  # noqa: E402
from harness import PILImages, load_victim, official_checkout  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from bench.defenses._base import accuracy  # noqa: E402
from bench.defenses._bounds import wrap_activations  # noqa: E402
from bench.defenses.unit import UNIT  # noqa: E402
from bench.run.cell import Cell  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attack", default="instagram")
    p.add_argument("--experiment", default="cpu_cifar")
    p.add_argument("--official", type=Path, required=True, help="a Megum1/UNIT checkout")
    p.add_argument("--defense-seed", type=int, default=None, help="the split's seed (default: the cell's)")
    p.add_argument("--draws", type=int, nargs="+", default=list(range(10)), help="the draws' seeds")
    args = p.parse_args()
    cell = Cell.compose([f"experiment={args.experiment}", f"attack={args.attack}", "defense=unit",
                         "logger=none", "progress=false"])  # fmt: skip
    victim = load_victim(cell, args.defense_seed)
    model = victim.fresh_model()
    unit: UNIT = instantiate(cell.cfg.defense)  # its eps, init_std and bounded layers, as configured
    device = victim.defender.device
    train, val = victim.defender_train, victim.defender_val
    n_val = len(val.y)

    with official_checkout(args.official):
        import unit as ref
        import utils as ref_utils

        ref_args = Namespace(dataset="cifar10", data_rate=1.0)
        ref.get_dataset = lambda a, train=True, augment=True: PILImages(
            victim.defender_in_split_order(), ref_utils.get_transform(a, augment=augment)
        )

        def official_draw(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            ref_utils.seed_torch(seed)
            x_t, _, x_v, y_v = ref.prepare_defense_samples(ref_args, train=True, augment=True)
            if not torch.equal(y_v.sort().values, val.y.sort().values):  # same images, in class order
                raise RuntimeError("the official collection split the defender images differently")
            return x_t, x_v, y_v

        def our_draw(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return *unit.draw_images(train, val, torch.Generator().manual_seed(seed), device), val.y

        print(f"{args.attack}, split seed {victim.defender.seed}, {len(train.y)} + {n_val} images, "
              f"eps {unit.eps}: drop = baseline - accuracy with the initial bounds, in images "
              f"(x: infeasible, UNIT's test)")  # fmt: skip
        drops: dict[tuple[str, str], list[int]] = {}
        feasible: dict[tuple[str, str], list[bool]] = {}
        for d in args.draws:
            draws = {"ours": our_draw(d), "official": official_draw(d)}
            bounds = {side: unit.initial_bounds(model, x_t, device) for side, (x_t, _, _) in draws.items()}
            line = [f"draw {d}:"]
            for val_side, (_, x_v, y_v) in draws.items():
                acc0 = accuracy(model, x_v, y_v, fp32=True)
                line.append(f"val {val_side} baseline {round(acc0 * n_val)}")
                for stats_side, b in bounds.items():
                    clipped = copy.deepcopy(model)
                    wrap_activations(clipped, b)
                    acc = accuracy(clipped, x_v, y_v, fp32=True)
                    drop = round((acc0 - acc) * n_val)
                    drops.setdefault((stats_side, val_side), []).append(drop)
                    ok = acc0 - acc <= unit.eps  # UNIT's test, on the same floats
                    feasible.setdefault((stats_side, val_side), []).append(ok)
                    line.append(f"stats {stats_side} drop {drop}{'' if ok else ' (x)'}")
            print("  ".join(line), flush=True)
    for (stats_side, val_side), values in drops.items():
        ok = sum(feasible[stats_side, val_side])
        print(f"stats {stats_side:8s} val {val_side:8s}: drop mean {statistics.mean(values):.1f} images, "
              f"sd {statistics.stdev(values) if len(values) > 1 else 0:.1f}, min {min(values)}, "
              f"max {max(values)}; initial bounds feasible in {ok}/{len(values)} draws")  # fmt: skip


if __name__ == "__main__":
    main()
