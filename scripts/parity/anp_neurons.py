"""Which neurons each ANP prunes: ours (the record's ``pruned_neurons``) beside the official code's (its
``mask_values.txt``, kept in the official result's log), per BN layer, with the neurons both prune.

    python scripts/parity/anp_neurons.py results/parity/ours/anp__badnets__s0__d1__threshold-0.2.json \
        results/parity/official/anp__badnets__s0__d1.json [--threshold 0.2]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

MASK_ROW = re.compile(r"^\d+ \t (\S+) \t (\d+) \t ([\d.]+) $", re.M)


def official_pruned(log: str, threshold: float) -> set[str]:
    """``layer:channel`` of every mask at or below ``threshold`` in the official's ``mask_values.txt``."""
    _, sep, masks = log.partition("# mask_values.txt\n")
    if not sep:
        raise SystemExit("the official result keeps no mask_values.txt (run before the adapter kept it)")
    return {f"{layer}:{k}" for layer, k, v in MASK_ROW.findall(masks) if float(v) <= threshold}


def layer_of(neuron: str) -> str:
    return neuron.rsplit(":", 1)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ours", type=Path)
    p.add_argument("official", type=Path)
    p.add_argument("--threshold", type=float, default=0.2)
    args = p.parse_args()
    info = json.loads(args.ours.read_text())["info"]
    if "pruned_neurons" not in info:
        raise SystemExit(f"{args.ours} names no pruned neurons (run before ANP recorded them)")
    # our network sits inside the normalising wrapper (``net.``); the official names it unwrapped
    ours = {n.removeprefix("net.") for n in info["pruned_neurons"]}
    theirs = official_pruned(json.loads(args.official.read_text())["log"], args.threshold)
    per_layer_ours, per_layer_theirs = Counter(map(layer_of, ours)), Counter(map(layer_of, theirs))
    both = ours & theirs
    per_layer_both = Counter(map(layer_of, both))
    print("| BN layer | ours | official | both |\n|---|---|---|---|")
    for layer in sorted(set(per_layer_ours) | set(per_layer_theirs)):
        print(f"| {layer} | {per_layer_ours[layer]} | {per_layer_theirs[layer]} | {per_layer_both[layer]} |")
    print(f"| all | {len(ours)} | {len(theirs)} | {len(both)} |")


if __name__ == "__main__":
    main()
