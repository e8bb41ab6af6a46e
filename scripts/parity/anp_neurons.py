"""Which neurons each ANP prunes: ours (the record's ``pruned_neurons``) beside the official code's (its
``mask_values.txt``, kept in the official result's log), per BN layer, with the neurons both prune.
``--attack`` also prunes each set (and the neurons both prune) in a fresh copy of that cached victim, as
both codes prune (the BN weight zeroed), and evaluates it in float32: whether the ASR gap is in which
neurons the masks pick or in how the pruned model is evaluated.

    python scripts/parity/anp_neurons.py results/parity/ours/anp__badnets__s0__d2__threshold-0.2.json \
        results/parity/official/anp__badnets__s0__d2.json [--threshold 0.2] [--attack badnets]
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from collections import Counter
from pathlib import Path

import torch
import torch.nn as nn

from bench.defenses.anp import NEAR_THRESHOLD

MASK_ROW = re.compile(r"^\d+ \t (\S+) \t (\d+) \t ([\d.]+) $", re.M)


def official_masks(log: str) -> dict[str, float]:
    """Every neuron's mask (``layer:channel``) in the official's ``mask_values.txt``, kept in its log."""
    _, sep, masks = log.partition("# mask_values.txt\n")
    if not sep:
        raise SystemExit("the official result keeps no mask_values.txt (run before the adapter kept it)")
    return {f"{layer}:{k}": float(v) for layer, k, v in MASK_ROW.findall(masks)}


def at_or_below(masks: dict[str, float], threshold: float) -> set[str]:
    """The neurons the official pruning prunes at ``threshold``: every mask at or below it."""
    return {name for name, v in masks.items() if v <= threshold}


def other_side_masks(ours_only: set[str], official_only: set[str], ours_near: dict[str, float],
                     official: dict[str, float], threshold: float) -> list[str]:  # fmt: skip
    """Each neuron only one code prunes, with the mask the other code gave it (ours: from the record's
    ``near_threshold``, so '>' its upper end when not there): near misses or different neurons."""
    above = f"> {threshold + NEAR_THRESHOLD:.2f}"
    rows = [f"| {n} | ours | {official[n]:.4f} |" for n in sorted(ours_only)]
    rows += [f"| {n} | official | {ours_near[n]:.4f} |" if n in ours_near else f"| {n} | official | {above} |"
             for n in sorted(official_only)]  # fmt: skip
    return ["| neuron | pruned by | the other code's mask |", "|---|---|---|", *rows]


def layer_of(neuron: str) -> str:
    return neuron.rsplit(":", 1)[0]


def pruned_copy(model: nn.Module, neurons: set[str]) -> nn.Module:
    """A copy of ``model`` (the normalising wrapper) with each ``layer:channel``'s BN weight zeroed."""
    pruned = copy.deepcopy(model).eval()
    with torch.no_grad():
        for neuron in neurons:
            layer, channel = neuron.rsplit(":", 1)
            pruned.net.get_submodule(layer).weight[int(channel)] = 0
    return pruned


def evaluate_sets(attack: str, seed: int, sets: dict[str, set[str]]) -> None:
    """Each set of neurons pruned in the cached victim of ``experiment=cpu_cifar_v1 attack=... seed=...``."""
    from harness import load_victim

    from bench.core.engine import precision
    from bench.run.cell import Cell
    from bench.run.metrics import evaluate

    cell = Cell.compose(["experiment=cpu_cifar_v1", f"attack={attack}", f"seed={seed}", "logger=none",
                         "progress=false"])  # fmt: skip
    victim = load_victim(cell)
    print("\n| pruned set | neurons | ACC | ASR |\n|---|---|---|---|")
    for name, neurons in sets.items():
        with precision("fp32"):
            after = evaluate(pruned_copy(victim.model, neurons), victim.test, victim.triggered, victim.target,
                             victim.defender.device)  # fmt: skip
        print(f"| {name} | {len(neurons)} | {after['acc']:.2f} | {after['asr']:.2f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ours", type=Path)
    p.add_argument("official", type=Path)
    p.add_argument("--threshold", type=float, default=0.2)
    p.add_argument("--attack", help="also evaluate each pruned set on this cpu_cifar victim")
    p.add_argument("--seed", type=int, default=0, help="the victim's seed (with --attack)")
    args = p.parse_args()
    info = json.loads(args.ours.read_text())["info"]
    if "pruned_neurons" not in info:
        raise SystemExit(f"{args.ours} names no pruned neurons (run before ANP recorded them)")
    # our network sits inside the normalising wrapper (``net.``); the official names it unwrapped
    ours = {n.removeprefix("net.") for n in info["pruned_neurons"]}
    official = official_masks(json.loads(args.official.read_text())["log"])
    theirs = at_or_below(official, args.threshold)
    per_layer_ours, per_layer_theirs = Counter(map(layer_of, ours)), Counter(map(layer_of, theirs))
    both = ours & theirs
    per_layer_both = Counter(map(layer_of, both))
    print("| BN layer | ours | official | both |\n|---|---|---|---|")
    for layer in sorted(set(per_layer_ours) | set(per_layer_theirs)):
        print(f"| {layer} | {per_layer_ours[layer]} | {per_layer_theirs[layer]} | {per_layer_both[layer]} |")
    print(f"| all | {len(ours)} | {len(theirs)} | {len(both)} |")
    if "near_threshold" in info:
        near = {n.removeprefix("net."): v for n, v in info["near_threshold"].items()}
        print("", *other_side_masks(ours - theirs, theirs - ours, near, official, args.threshold), sep="\n")
    if args.attack:
        sets = {"ours": ours, "official": theirs, "both": both, "ours only": ours - theirs,
                "official only": theirs - ours}  # fmt: skip
        evaluate_sets(args.attack, args.seed, sets)


if __name__ == "__main__":
    main()
