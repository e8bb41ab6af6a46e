"""Share of activation elements above UNIT's initial bound (mean + 4 std on the defender's data),
per activation layer, on clean vs triggered non-target test images of a cell's victim.

Tells apart a trigger carried by a few very large activations (clipping removes it) from one carried by
many moderately raised ones (clipped values stay at the top of the clean range). Prints JSON.
Usage: python scripts/bound_exceedance.py experiment=cpu attack=blend [--images 500]
"""

from __future__ import annotations

import argparse
import json

import torch

from bench.core.images import to_float
from bench.defenses._bounds import activation_statistics, find_activations
from bench.run.cell import Cell
from bench.run.victims import load_or_train_victim


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*")
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--std", type=float, default=4.0)
    args = p.parse_args()
    cell = Cell.compose([*args.overrides, "progress=false"])
    victim = load_or_train_victim(cell)
    device = victim.cell.device
    model = victim.model.eval()
    layers = find_activations(model, (torch.nn.ReLU,))
    stats = activation_statistics(model, layers, victim.defender_context().data.x, device)
    test = victim.data.test
    clean = test.x[test.y != victim.attack.target][: args.images]
    outputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: outputs.__setitem__(n, o)) for n, m in layers]
    result = {}
    for kind, x in (("clean", clean), ("triggered", victim.attack.apply_uint8(clean))):
        with torch.no_grad():
            model(to_float(x.to(device)))
        result[kind] = {
            n: round(
                100 * (outputs[n] > stats[n]["mean"] + args.std * stats[n]["std"]).float().mean().item(), 2
            )
            for n, _ in layers
        }
    for h in hooks:
        h.remove()
    print(
        json.dumps(
            {"overrides": args.overrides, "images": len(clean), "percent_above_bound": result}, indent=1
        )
    )


if __name__ == "__main__":
    main()
