"""One picture of every attack's trigger, one column per attack: a clean test image, its triggered version,
and the amplified difference, with the exact trigger each victim is trained with (optimised patterns and
trained generators included). The figure's title names the dataset and setting.

Usage: python scripts/plot_triggers.py experiment=cpu_cifar [--out results/figures/triggers.png] [--gain 5]
    [--variants]   (adds BadNets' and Reflection's paper variants, each a victim of its own)
    [--attacks badnets dfst ...]   (only these columns; default every attack)
The trigger comes from poisoning alone where it does not learn with the victim (``trigger_of``: a cached
victim is read, the auxiliary networks are trained on a miss); Dynamic's and IA's need their victims,
which are trained first when missing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt

from bench.catalogue import CONF_DIR
from bench.core.images import to_float
from bench.run.cell import Cell
from bench.run.victims import trigger_of

VARIANTS = [("badnets", "paper"), ("reflection", "paper")]


def rows(variants: bool, attacks: list[str] | None = None) -> list[tuple[str, list[str]]]:
    names = sorted(p.stem for p in (CONF_DIR / "attack").glob("*.yaml") if p.stem != "none")
    unknown = sorted(set(attacks or []) - set(names))
    if unknown:
        raise SystemExit(f"no such attack: {', '.join(unknown)} (known: {', '.join(names)})")
    out = [(name, [f"attack={name}"]) for name in names if attacks is None or name in attacks]
    if variants:
        out += [(f"{name} ({v})", [f"attack={name}", f"attack.variant={v}"])
                for name, v in VARIANTS if attacks is None or name in attacks]  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*")
    p.add_argument("--out", default="results/figures/triggers.png")
    p.add_argument("--gain", type=float, default=5.0, help="amplification of |triggered - clean|")
    p.add_argument("--index", type=int, default=0, help="which non-target test image to show")
    p.add_argument("--variants", action="store_true", help="add the attacks' paper variants as columns")
    p.add_argument("--attacks", nargs="+", help="only these attacks' columns (default: every attack)")
    args = p.parse_args()
    plt.switch_backend("agg")
    entries = rows(args.variants, args.attacks)
    fig, axes = plt.subplots(3, len(entries), figsize=(1.1 * len(entries), 3.9), squeeze=False)
    for column, (label, extra) in zip(axes.T, entries, strict=True):
        cell = Cell.compose([*args.overrides, *extra, "progress=false", "logger=none", "device=cpu"])
        cfg = cell.cfg
        data, attack = trigger_of(cell)
        test = data.test
        image = test.x[test.y != attack.target][args.index : args.index + 1]
        clean, triggered = to_float(image), to_float(attack.apply_uint8(image))
        diff = ((triggered - clean).abs() * args.gain).clamp(0, 1)
        for ax, img in zip(column, (clean, triggered, diff), strict=True):
            ax.imshow(img[0].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        column[0].set_title(label.replace(" (", "\n("), fontsize=7)
    for ax, name in zip(axes[:, 0], ("clean", "triggered", f"|diff| x{args.gain:g}"), strict=True):
        ax.set_ylabel(name, fontsize=7)
    setting = " ".join(o for o in args.overrides if o.startswith("experiment=")) or "defaults"
    fig.suptitle(f"Triggers on {cfg.dataset._target_.rsplit('.', 1)[-1]} test image #{args.index} "
                 f"(non-target class), {setting}, seed {cfg.seed}", fontsize=8)  # fmt: skip
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=150)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
