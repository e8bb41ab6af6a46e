"""The paper's figures from result records: Fig. 5 (UNIT's ACC and ASR before and after, per attack, one
panel per dataset/architecture pair), Fig. 6 (each defense's wall-clock) and Table 1 as heatmaps (ours
beside the paper's). Written as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.report.render import label  # noqa: E402
from bench.report.statistics import AVERAGE, KEPT, first_seen, ordered, paper_table1, setting, table1, wide  # noqa: E402

BARS = (("acc_before", "ACC before", "#9ecae1"), ("acc", "ACC after", "#3182bd"),
        ("asr_before", "ASR before", "#fcbba1"), ("asr", "ASR after", "#de2d26"))  # fmt: skip


def save(fig: plt.Figure, out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.{ext}" for ext in ("png", "pdf")]
    for path in paths:  # no creation date in the PDF: re-aggregating the same runs gives the same bytes
        meta = {"CreationDate": None} if path.suffix == ".pdf" else None
        fig.savefig(path, dpi=150, bbox_inches="tight", metadata=meta)
    plt.close(fig)
    return paths


def fig5(frame: pd.DataFrame, out: Path, defense: str = "unit") -> list[Path]:
    """Per dataset/model pair: ACC and ASR of each backdoored model before and after ``defense``."""
    cells = frame[(frame.defense == defense) & (frame.attack != "none")]
    if cells.empty:
        raise ValueError(f"no records of defense={defense} on a backdoored model")
    cells = cells.groupby(["dataset", "model", "attack"])[[c for c, _, _ in BARS]].mean().reset_index()
    pairs = list(cells[["dataset", "model"]].drop_duplicates().itertuples(index=False))
    attack_order = first_seen(paper_table1().attack)
    fig, axes = plt.subplots(
        len(pairs), 1, figsize=(12, 3.2 * len(pairs)), squeeze=False, layout="constrained"
    )
    for ax, (dataset, model) in zip(axes[:, 0], pairs, strict=True):
        panel = cells[(cells.dataset == dataset) & (cells.model == model)].set_index("attack")
        attacks = ordered(list(panel.index), attack_order)
        x = np.arange(len(attacks))
        for i, (column, name, colour) in enumerate(BARS):
            ax.bar(x + (i - 1.5) * 0.2, panel.loc[attacks, column], 0.2, label=name, color=colour)
        ax.set_xticks(x, [label(a) for a in attacks], rotation=30, ha="right")
        ax.set_ylim(0, 105)
        ax.set_ylabel("%")
        pair_records = frame[(frame.dataset == dataset) & (frame.model == model)]
        ax.set_title(f"{label(defense)} on {dataset} / {model}{setting(pair_records)}")
    axes[0, 0].legend(ncol=4, loc="lower left", bbox_to_anchor=(0, 1.12), frameon=False)
    return save(fig, out, "fig5")


def fig6(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Each defense's wall-clock over the backdoored models it repaired, one panel per dataset/model pair
    (their costs differ by the architecture): median bar, min-max whisker, the number of models under each
    bar; each title names the pair, its setting and device."""
    cells = frame[(frame.defense != "none") & (frame.attack != "none")]
    if cells.empty:
        raise ValueError("no records of a defense on a backdoored model")
    pairs = list(cells[["dataset", "model"]].drop_duplicates().itertuples(index=False, name=None))
    counts = [cells[(cells.dataset == d) & (cells.model == m)].defense.nunique() for d, m in pairs]
    size = (1.0 + 0.7 * max(counts), 3.5 * len(pairs))
    fig, axes = plt.subplots(len(pairs), 1, figsize=size, squeeze=False, layout="constrained")
    for ax, (dataset, model) in zip(axes[:, 0], pairs, strict=True):
        pair = cells[(cells.dataset == dataset) & (cells.model == model)]
        stats = pair.groupby("defense").defense_s.agg(["median", "min", "max", "count"])
        stats = stats.loc[ordered(list(stats.index), first_seen(paper_table1().defense))]
        x = np.arange(len(stats))
        err = np.vstack([stats["median"] - stats["min"], stats["max"] - stats["median"]])
        ax.bar(x, stats["median"], yerr=err, capsize=3, color="#3182bd")
        ax.set_xticks(x, [f"{label(d)}\nn={n}" for d, n in stats["count"].items()], rotation=30, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("defense wall-clock (s)")
        devices = ", ".join(sorted(pair.device.astype(str).unique())) if "device" in pair else "?"
        ax.set_title(
            f"Median wall-clock per defense, {dataset} / {model}{setting(pair)}; device: {devices}; "
            "whiskers: min-max",
            fontsize=9,
        )
    return save(fig, out, "fig6")


def table1_heatmap(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Table 1 as heatmaps: ASR and ACC per attack and defense, ours beside the paper's (where the records
    are of the paper's pair), each cell annotated; a gap is left blank."""
    t1 = table1(frame)
    t1 = t1[~t1.attack.isin([AVERAGE, KEPT])]
    sides = [("", "ours")] + ([("paper_", "paper")] if t1.paper_asr.notna().any() else [])
    fig, axes = plt.subplots(
        2, len(sides), figsize=(5.5 * len(sides), 9), squeeze=False, layout="constrained"
    )
    for row, (metric, cmap) in enumerate((("asr", "Reds"), ("acc", "Blues"))):
        for col, (prefix, who) in enumerate(sides):
            values = wide(t1, f"{prefix}{metric}")
            ax = axes[row, col]
            ax.imshow(values.to_numpy(dtype=float), cmap=cmap, vmin=0, vmax=100, aspect="auto")
            ax.set_xticks(range(values.shape[1]), [label(d) for d in values.columns], rotation=45, ha="right")
            ax.set_yticks(range(values.shape[0]), [label(a) for a in values.index])
            for (i, j), v in np.ndenumerate(values.to_numpy(dtype=float)):
                if not np.isnan(v):
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if v > 60 else "black")  # fmt: skip
            ax.set_title(f"{metric.upper()} (%), {who}")
    dataset, model = t1.attrs.get("pair", ("?", "?"))
    fig.suptitle(f"Table 1 on {dataset} / {model}{setting(frame)}", fontsize=10)
    return save(fig, out, "table1_heatmap")
