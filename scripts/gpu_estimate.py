"""What the CIFAR-10 grid would cost on one GPU at the paper's budgets: an estimate, not a measurement.

No GPU is reachable here, so nothing below is timed on one. The estimate scales what the grid measured:
each defense column's median one-core minutes per cell (``cost.csv``, from the aggregator) x the factor
from the grid's budget to the paper's (table1 experiment) x (one-core training images/s of a width-0.25
network, measured from the clean victim's record / an assumed GPU images/s of the full-width network).
It assumes a defense's time scales with the images it trains on, as training does; defenses that step
on small batches (NC and SEAM: 32) keep a GPU far less busy, so for them it is a lower bound.
Usage: python scripts/gpu_estimate.py results/cpu_cifar [--gpu-images-per-s 5000]
(its output is results/cpu_cifar/gpu_estimate.md)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bench.report.render import label, shown
from bench.run.records import read_records

# From the grid's budget (experiment=cpu_cifar_table1: finetune_epochs 20, scale 0.1) to the paper's
# (experiment=table1: each original's recipe, scale 1), per defense: (factor, why).
FACTORS = {
    "ft": (5.0, "20 -> 100 epochs"),
    "fp": (5.0, "20 -> 100 epochs of fine-tuning; pruning only evaluates"),
    "nad": (0.75, "teacher 20 -> 10 epochs (the grid's finetune_epochs lengthened it), student 20"),
    "anp": (10.0, "200 -> 2,000 iterations"),
    "nc": (1.25, "searches: the cap bound 1 of 10 on BadNets, none at x0.25; unlearning 20 -> 100 epochs"),
    "ibau": (1.0, "not scaled (5 rounds)"),
    "seam": (1.4, "recovery stopped by the grid's 20-epoch cap; 24-32 epochs under the paper's cap of 100"),
    "unit": (1.0, "stopping rule (step cap with early stopping)"),
    "bna": (10.0, "50 -> 500 search steps per class pair (nearly all of its time)"),
    "tsbd": (1.0, "stopping rule and its 20 epochs, both the original's"),
}
PAPER_VICTIM_EPOCHS = 100  # conf/train/standard.yaml, the table1 experiment's victims


def cpu_images_per_s(runs: Path) -> tuple[float, str]:
    """One-core training images/s of the clean victim (its training images x epochs / one-core seconds;
    an unset train size is all of CIFAR-10's 50,000)."""
    clean = [r for r in read_records(runs) if r["attack"] == "none" and r["defense"] == "none"]
    if not clean:
        raise FileNotFoundError(f"no clean-model record (attack=none defense=none) in {runs}")
    record = clean[0]
    images = (record["config"]["dataset"].get("train_size") or 50_000) * record["config"]["train"]["epochs"]
    victim = record["compute"]["victim"]
    return images / (record["attack_train_s"] * victim["threads"]), victim["cpu"]


def estimate(cost: pd.DataFrame, cpu_ips: float, gpu_ips: float, rows: int) -> pd.DataFrame:
    """Per defense column: measured median one-core minutes, the factor, and GPU minutes per cell and for
    the column's ``rows`` cells."""
    per_defense = cost[cost.defense.isin(FACTORS.keys())].set_index("defense")
    factor = pd.Series({d: f for d, (f, _) in FACTORS.items()})[per_defense.index]
    gpu_cell = per_defense["median"] * factor * cpu_ips / gpu_ips
    return pd.DataFrame({
        "defense": [label(d) for d in per_defense.index],
        "grid one-core min/cell (median)": per_defense["median"].to_numpy(),
        "factor to the paper's budget": factor.to_numpy(),
        "why": [FACTORS[d][1] for d in per_defense.index],
        "GPU min/cell": gpu_cell.to_numpy(),
        f"GPU h for {rows} cells": (gpu_cell * rows / 60).to_numpy(),
    })  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, help="the folder with cost.csv and runs/table1 (results/cpu_cifar)")
    assumed = "assumed training images/s of the full-width ResNet-18 on the GPU (bf16 autocast)"
    p.add_argument("--gpu-images-per-s", type=float, default=5000.0, help=assumed)
    args = p.parse_args()
    cost = pd.read_csv(args.results / "cost.csv")
    cost = cost[(cost.dataset == "cifar10") & (cost.model == "resnet18")]
    cpu_ips, cpu = cpu_images_per_s(args.results / "runs" / "table1")
    rows = 15  # the clean model and 14 attacks
    table = estimate(cost, cpu_ips, args.gpu_images_per_s, rows)
    defenses_h = table.iloc[:, -1].sum()
    victim_h = rows * 50_000 * PAPER_VICTIM_EPOCHS / args.gpu_images_per_s / 3600
    print(
        f"# Table 1 on one GPU at the paper's budgets: an estimate, not a measurement\n\n"
        f"Assumed: the GPU trains the full-width ResNet-18 at {args.gpu_images_per_s:,.0f} images/s (not "
        f"measured; no GPU is reachable here). Measured: one core of {cpu} trains the width-0.25 network at "
        f"{cpu_ips:,.0f} images/s (the clean victim's record). GPU minutes = the grid's median one-core "
        f"minutes x the factor x {cpu_ips:,.0f} / {args.gpu_images_per_s:,.0f}. Evaluation and the "
        f"attacks' auxiliary networks are left out; NC and SEAM step on batches of 32, which keep a GPU "
        f"far less busy than training's 128, so their figures are lower bounds.\n\n{shown(table)}\n\n"
        f"Defenses: about {defenses_h:.1f} GPU hours for the {len(table)} columns x {rows} rows; the "
        f"{rows} victims ({PAPER_VICTIM_EPOCHS} epochs of 50,000 images each) about {victim_h:.1f} more; "
        f"about {defenses_h + victim_h:.0f} hours in all on one GPU.\n"
        f"Command: `python scripts/gpu_estimate.py {args.results} --gpu-images-per-s "
        f"{args.gpu_images_per_s:g}`\n"
    )


if __name__ == "__main__":
    main()
