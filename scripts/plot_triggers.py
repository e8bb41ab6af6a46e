"""One picture of every attack's trigger: a clean test image, its triggered version, and the amplified
difference, with the exact trigger each cached victim was trained with (optimised patterns included).

Usage: python scripts/plot_triggers.py experiment=cpu [--out results/figures/triggers.png] [--gain 5]
Victims missing from the model cache are trained first (scripts/run_cpu_attacks.sh trains them all).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt

from attacks._base import to_float
from bench.entry import CONF_DIR, compose_config
from bench.pipeline import load_victim, resolve_device

VARIANTS = [("badnets", "paper"), ("reflection", "paper")]


def rows() -> list[tuple[str, list[str]]]:
    names = sorted(p.stem for p in (CONF_DIR / "attack").glob("*.yaml") if p.stem != "none")
    out = [(name, [f"attack={name}"]) for name in names]
    out += [(f"{name} ({v})", [f"attack={name}", f"attack.variant={v}"]) for name, v in VARIANTS]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*")
    p.add_argument("--out", default="results/figures/triggers.png")
    p.add_argument("--gain", type=float, default=5.0, help="amplification of |triggered - clean|")
    p.add_argument("--index", type=int, default=0, help="which non-target test image to show")
    args = p.parse_args()
    plt.switch_backend("agg")
    entries = rows()
    fig, axes = plt.subplots(len(entries), 3, figsize=(4.5, 1.6 * len(entries)))
    for row, (label, extra) in zip(axes, entries, strict=True):
        cfg = compose_config([*args.overrides, *extra, "progress=false", "logger=none"])
        victim = load_victim(cfg, resolve_device("cpu"))
        test = victim.data.test
        image = test.x[test.y != victim.attack.target][args.index : args.index + 1]
        clean, triggered = to_float(image), to_float(victim.attack.apply_uint8(image))
        diff = ((triggered - clean).abs() * args.gain).clamp(0, 1)
        titles = ("clean", "triggered", f"|diff| x{args.gain:g}")
        for ax, img, title in zip(row, (clean, triggered, diff), titles, strict=True):
            ax.imshow(img[0].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=7)
        row[0].set_ylabel(label, fontsize=7)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=150)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
