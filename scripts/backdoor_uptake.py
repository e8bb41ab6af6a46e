"""Why a victim's backdoor did not take: did it fit its poisoned training images, and does it read the
trigger at any strength? For a cached victim of an attack that poisons a fixed set (Adap-Blend, Trojan,
CL, LIRA's stage 2, or any attack under ``poisoning=fixed_subset``), prints one JSON object:

- ``poison_fit``: the share of its relabelled training images (as they were stored, before augmentation)
  that the victim classifies as the target: near 100% and a low ASR means it memorised those images
  rather than learnt their trigger; near chance means it never fit them;
- ``cover_fit``: the share of trigger-carrying images that kept their true label (Adap-Blend's cover set)
  classified as that label;
- ``asr_by_alpha``: for a blend attack (an attack with ``test_alpha``), the ASR on the non-target test
  images at each ``--alphas`` blend strength, the victim's own ``test_alpha`` among them.

The victim is loaded from the model cache (trained on a miss, as a cell would); the poisoned set is
recomputed with the attack's seeds, so it is the one the victim trained on.

    python scripts/backdoor_uptake.py experiment=cpu_cifar_study attack=adap_blend precision=fp32 \
        --alphas 0.15 0.2 0.3 0.5
"""

from __future__ import annotations

import argparse
import copy
import json
import sys

from bench.core.engine import precision
from bench.run.cell import Cell
from bench.run.host import compute_info
from bench.run.metrics import percent, predict
from bench.run.victims import load_or_train_victim, poison_training_set


def uptake(cell: Cell, alphas: list[float]) -> dict[str, object]:
    """The victim's fit of its poisoned and cover images and, for a blend attack, its ASR per alpha."""
    if alphas and "test_alpha" not in cell.cfg.attack:
        raise SystemExit(
            f"--alphas needs a blend attack (one with test_alpha), not {cell.cfg.attack._target_}"
        )
    victim = load_or_train_victim(cell)
    attack, data, device, model = victim.attack, victim.data, cell.device, victim.model
    clean, target = data.train, attack.target
    poisoned = poison_training_set(cell, data, attack)
    changed = (poisoned.x != clean.x).flatten(1).any(1)
    relabelled = poisoned.y != clean.y
    cover = changed & ~relabelled
    if not changed.any():
        raise SystemExit(
            f"{cell.cfg.attack._target_} left the stored training set unchanged (it poisons in batches)"
        )
    row: dict[str, object] = {"victim": cell.victim_key, "poisoned": int(relabelled.sum()),
                              "cover": int(cover.sum())}  # fmt: skip
    with precision(cell.precision):
        if relabelled.any():
            row["poison_fit"] = percent(predict(model, poisoned.x[relabelled], device) == target)
        if cover.any():
            row["cover_fit"] = percent(predict(model, poisoned.x[cover], device) == clean.y[cover])
        if alphas:
            x, probe = data.test.x[data.test.y != target], copy.deepcopy(attack)
            asr = {}
            for alpha in alphas:
                probe.test_alpha = alpha
                asr[str(alpha)] = percent(predict(model, probe.apply_uint8(x), device) == target)
            row["asr_by_alpha"] = asr
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*")
    p.add_argument("--alphas", type=float, nargs="*", default=[])
    args = p.parse_args()
    row = uptake(Cell.compose([*args.overrides, "defense=none", "progress=false"]), args.alphas)
    row["command"] = " ".join(["python scripts/backdoor_uptake.py", *sys.argv[1:]])
    row["compute"] = compute_info()
    print(json.dumps(row))


if __name__ == "__main__":
    main()
