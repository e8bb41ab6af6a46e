"""The numbers of the paper's tables from result records: Table 1 (attacks x defenses, ACC and ASR, the
paper's numbers beside ours, average rows), Table 2 (defenses applied to clean models), the rank agreement
with the paper, and the compute each defense column cost (one-core minutes). ``render`` writes them out.

Everything is computed from a records frame (``bench.report.aggregate.records_frame``). A cell without a
record stays a gap (NaN), never a zero, and averages skip gaps. Several seeds of one cell are averaged; two
records of one (attack, defense, seed) that differ in anything else are an error, since averaging them
would hide the difference.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.run.identity import RUN_ONLY_DEFENSE_KEYS, RUN_ONLY_KEYS
from bench.run.records import AT_CHANCE, COLLAPSE_DROP, NO_BACKDOOR

REFERENCE = Path(__file__).resolve().parent / "reference"
AVERAGE = "average"
KEPT = "average, collapsed left out"  # the average over the cells whose model did not collapse
# Display names; anything not listed is shown as its config name.
LABELS = {
    "none": "None", "badnets": "BadNets", "trojan": "Trojan", "cl": "CL", "dynamic": "Dynamic",
    "ia": "IA", "reflection": "Reflection", "sig": "SIG", "blend": "Blend", "wanet": "WaNet",
    "issba": "ISSBA", "lira": "LIRA", "instagram": "Instagram", "dfst": "DFST", "adap_blend": "Adap-Blend",
    "combat": "COMBAT", "narcissus": "NARCISSUS",
    "ft": "FT", "fp": "FP", "nad": "NAD", "anp": "ANP", "nc": "NC", "ibau": "I-BAU", "seam": "SEAM",
    "unit": "UNIT", "tsbd": "TSBD", "bna": "BNA", "strip": "STRIP", "clip_uniform": "Uniform clip",
    "clp": "CLP", "ft_sam": "FT-SAM", "fst": "FST", "rnp": "RNP", "super_ft": "Super-FT",
}  # fmt: skip
LABELS |= {AVERAGE: "Average", KEPT: "Average, collapsed left out"}


def paper_table1() -> pd.DataFrame:
    """The UNIT paper's Table 1 (CIFAR-10/ResNet-18): columns attack, defense, acc, asr."""
    return pd.read_csv(REFERENCE / "unit_table1.csv")


def paper_table2() -> pd.DataFrame:
    """The UNIT paper's Table 2: dataset, model, acc_original, acc_unit, diff."""
    return pd.read_csv(REFERENCE / "unit_table2_clean_models.csv")


def first_seen(values: pd.Series | list[str]) -> list[str]:
    """The distinct values in the order they first appear (the paper's row and column order)."""
    return list(dict.fromkeys(values))


def ordered(names: pd.Series | list[str], reference: list[str]) -> list[str]:
    """``names`` in the paper's order, names the paper lacks after them in alphabetical order."""
    present = set(names)
    return [n for n in reference if n in present] + sorted(present - set(reference))


# What a table's records share beyond dataset and model, as "name value" in its heading.
SETTING_KEYS = {"width": "config.model.width", "epochs": "config.train.epochs",
                "train images": "config.dataset.train_size", "precision": "config.precision",
                "budget scale": "config.budget.scale"}  # fmt: skip


def setting(frame: pd.DataFrame) -> str:
    """The training and budget setting of the records for a heading (`` (width 0.25, epochs 20, ...)``,
    empty when the records lack the keys); a key whose records disagree is shown as ``mixed``, a train
    size left unset as ``all`` (``aggregate.with_later_keys`` gives older records the keys added since)."""
    parts = []
    for name, column in SETTING_KEYS.items():
        if column not in frame:
            continue
        values = frame[column].astype(object).where(frame[column].notna(), "all").unique()
        parts.append(f"{name} {values[0] if len(values) == 1 else 'mixed'}")
    return f" ({', '.join(parts)})" if parts else ""


def pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The (dataset, model) pairs of the records, in the order first seen."""
    return list(frame[["dataset", "model"]].drop_duplicates().itertuples(index=False, name=None))


def one_pair(frame: pd.DataFrame) -> pd.DataFrame:
    """Table 1's records: those of its one dataset/model pair, the paper's own when the records hold
    several (the aggregator writes one Table 1 per pair; Fig. 5 and Table 2 take every pair)."""
    found = pairs(frame)
    if len(found) > 1 and PAPER_PAIR in found:
        return frame[(frame.dataset == PAPER_PAIR[0]) & (frame.model == PAPER_PAIR[1])]
    if len(found) != 1:
        found = ", ".join(f"{d}/{m}" for d, m in found)
        raise ValueError(f"Table 1 is for one dataset/model pair; the records have {found}")
    return frame


class MixedConfigs(ValueError):
    """Records of different configs share a cell: a table of them would silently pick or average."""


# What a defense did to a backdoor, by the cell's ASR: removed (<= 10%), survived (>= 50%), or partly
# removed. Ours and the paper's agree on a cell when they fall in one class; this is coarse on purpose,
# since a few points of ASR are within what a second seed moves (seed_defenses.md) and the settings differ.
REMOVED_MAX, SURVIVED_MIN = 10.0, 50.0


def outcome(asr: pd.Series) -> pd.Series:
    """The class of each ASR (NaN stays NaN): 0 removed, 1 partly removed, 2 survived."""
    return (asr.gt(REMOVED_MAX).astype(float) + asr.ge(SURVIVED_MIN)).where(asr.notna())


def seeds_split(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per ``keys``: whether the seeds' ASRs fall in different outcome classes (a two-seed mean can sit in
    a class neither seed is in, so the table says when its class is a coin flip)."""
    classes = frame.assign(outcome=outcome(frame.asr)).groupby(keys).outcome.nunique()
    return classes.gt(1).rename("seeds_split").reset_index()


def seed_means(frame: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean over seeds per ``keys``, refusing cells recorded twice under one seed."""
    dup = frame.duplicated([*keys, "seed"], keep=False)
    if dup.any():
        cells = frame.loc[dup, [*keys, "seed"]].drop_duplicates().to_dict("records")
        differ = differing_config_keys(frame[dup], [*keys, "seed"])
        raise MixedConfigs(
            f"cells recorded more than once with different configs ({', '.join(differ) or 'config'} differ): "
            f"{cells[:3]}{' ...' if len(cells) > 3 else ''}; pick one with --where KEY=VALUE"
        )
    grouped = frame.groupby(keys)
    means = grouped[metrics].mean().join(grouped.size().rename("n_seeds"))
    for metric in SPREAD_METRICS:
        if metric in metrics:
            means[f"{metric}_ci95"] = grouped[metric].agg(ci95_half_width)
    return means.reset_index()


# Student's t at 97.5% for 1-30 degrees of freedom (two-sided 95%); beyond, the normal 1.96.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)  # fmt: skip
SPREAD_METRICS = ("acc", "asr")


def ci95_half_width(values: pd.Series) -> float:
    """Half-width of the 95% confidence interval of the mean over seeds (t-distribution); NaN for one."""
    values = values.dropna()
    n = len(values)
    if n < 2:
        return float("nan")
    t = T975[n - 2] if n - 1 <= len(T975) else 1.96
    return t * values.std(ddof=1) / n**0.5


def differing_config_keys(frame: pd.DataFrame, keys: list[str]) -> list[str]:
    """The config keys (``config.`` columns, without the prefix) whose values differ within a cell; keys
    that cannot change a result (paths, logging, device) do not count."""
    run_only = (*(f"config.{k}" for k in RUN_ONLY_KEYS),
                *(f"config.defense.{k}" for k in RUN_ONLY_DEFENSE_KEYS))  # fmt: skip
    columns = [c for c in frame.columns if c.startswith("config.") and not c.startswith(run_only)]
    text = frame[columns].astype(str).join(frame[keys])
    differ = [c for c in columns if (text.groupby(keys)[c].nunique() > 1).any()]
    return [c.removeprefix("config.") for c in differ]


def table1(frame: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long form, one row per (attack, defense) of the full grid of what was run, plus ``average`` rows:
    ours (acc, asr, ra, der, defense_s, n_seeds) and the paper's (paper_acc, paper_asr)."""
    frame = one_pair(frame[frame.attack != "none"])
    paper = paper_table1() if paper is None else paper
    pair = tuple(frame[["dataset", "model"]].iloc[0])
    if pair != PAPER_PAIR:  # the paper's numbers are of its pair only
        paper = paper.assign(acc=float("nan"), asr=float("nan"))
    # a DER against chance is not a number; a frame without the victim's ACC has no collapsed cell
    frame = frame.assign(
        der=frame.der.where(~at_chance(frame)), acc_before=frame.get("acc_before", float("nan"))
    )
    ours = seed_means(frame, ["attack", "defense"], ["acc", "asr", "ra", "der", "defense_s", "acc_before"])
    ours = ours.merge(warned_cells(frame), how="left").merge(seeds_split(frame, ["attack", "defense"]))
    ours["collapsed"] = (ours.defense != "none") & (ours.acc_before - ours.acc > COLLAPSE_DROP)
    ours["warned"] = ours.warned.fillna(False).astype(bool) | ours.collapsed
    ours = ours.drop(columns="acc_before")
    attacks = ordered(ours.attack, first_seen(paper.attack))
    defenses = ordered(ours.defense, first_seen(paper.defense))
    grid = pd.MultiIndex.from_product([attacks, defenses], names=["attack", "defense"]).to_frame(index=False)
    theirs = paper.rename(columns={"acc": "paper_acc", "asr": "paper_asr"})
    table = grid.merge(ours, how="left").merge(theirs, how="left")
    # Averages over the attacks that have our number in every column, the paper's over the same attacks,
    # so the two compare like with like while a grid is incomplete (with all 14 attacks the paper's column
    # is the mean of its rows). A row whose victim has no backdoor is left out of both: its cells measure no
    # removal, and its low ASRs would pull every defense's average alike.
    unbackdoored = no_backdoor(frame)
    same = table[~table.attack.isin(unbackdoored)]
    # On an incomplete grid only the attacks every column has a record of are averaged, so no column's
    # average is over a different (easier or harder) set of attacks than its neighbour's.
    complete = same.acc.notna().groupby(same.attack, sort=False).all()
    averaged = list(complete.index[complete])
    same = same[same.attack.isin(averaged)]
    same = same.assign(**{f"paper_{m}": same[f"paper_{m}"].where(same[m].notna()) for m in ("acc", "asr")})
    # and over the cells whose model did not collapse, so a defense that destroys the model cannot rank
    # by the low ASR of its broken models (NaN, a gap, is not a collapse either)
    kept = same[same.collapsed != True]  # noqa: E712
    rows = [mean_row(cells, name, defenses) for cells, name in ((same, AVERAGE), (kept, KEPT))]
    out = pd.concat([table, *(row[table.columns] for row in rows)], ignore_index=True)
    out.attrs["pair"] = pair
    out.attrs["no_backdoor"] = unbackdoored
    out.attrs["incomplete"] = [a for a in complete.index if a not in averaged]  # left out of the averages
    out.attrs["setting"] = setting(frame)
    return out


def mean_row(cells: pd.DataFrame, name: str, defenses: list[str]) -> pd.DataFrame:
    """One pseudo-attack row ``name``: each defense's mean over ``cells`` (a defense without any is a gap)."""
    means = cells.groupby("defense", sort=False).mean(numeric_only=True).reindex(defenses).reset_index()
    spreads = {f"{m}_ci95": float("nan") for m in SPREAD_METRICS}  # not a seed mean
    return means.assign(
        attack=name, n_seeds=float("nan"), warned=False, collapsed=False, seeds_split=False, **spreads
    )


def at_chance(frame: pd.DataFrame) -> pd.Series:
    """Whether each record's victim or repaired model is at chance (its sanity warning)."""
    return warning_lists(frame).apply(lambda w: any(AT_CHANCE in text for text in w))


def warning_lists(frame: pd.DataFrame) -> pd.Series:
    """Each record's sanity warnings as a list (empty for records older than ``warnings``)."""
    flags = frame.get("warnings", pd.Series([None] * len(frame), index=frame.index))
    return flags.apply(lambda w: w if isinstance(w, list) else [])


def no_backdoor(frame: pd.DataFrame) -> list[str]:
    """The attacks whose victim's backdoor did not take (the sanity warning on their records)."""
    took_not = warning_lists(frame).apply(lambda w: any(NO_BACKDOOR in text for text in w))
    return first_seen(frame.attack[took_not])


def warned_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """(attack, defense, warned): whether any record of the cell carries a sanity warning."""
    warned = warning_lists(frame).apply(bool)
    return frame.assign(warned=warned).groupby(["attack", "defense"], as_index=False)["warned"].any()


def wide(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """attack x defense for one column of the long table, in the long table's order."""
    out = table.pivot(index="attack", columns="defense", values=column)
    return out.loc[first_seen(table.attack), first_seen(table.defense)]


MIN_SPEARMAN = 5
PAPER_PAIR = ("cifar10", "resnet18")  # Table 1's dataset and architecture


def spearman(table: pd.DataFrame, metric: str = "asr", row: str = AVERAGE) -> tuple[float, int]:
    """Rank correlation of our per-defense average (``row``: every cell, or ``KEPT``: collapsed cells left
    out) with the paper's, over the defenses (other than ``none``) that have both; pandas' Pearson on
    ranks, so no SciPy is needed."""
    avg = table[(table.attack == row) & (table.defense != "none")]
    both = avg[[metric, f"paper_{metric}"]].dropna()
    if len(both) < MIN_SPEARMAN:  # a rank correlation over fewer defenses says little
        return float("nan"), len(both)
    return both[metric].rank().corr(both[f"paper_{metric}"].rank()), len(both)


def table2(frame: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Clean models (attack=none): the model's own ACC and its ACC after each defense, per dataset/model,
    with the paper's UNIT columns where the paper has the pair."""
    clean = frame[frame.attack == "none"]
    if clean.empty:
        raise ValueError("no records of clean models (attack=none)")
    paper = paper_table2() if paper is None else paper
    ours = seed_means(clean, ["dataset", "model", "defense"], ["acc_before", "acc"])
    after = ours.pivot(index=["dataset", "model"], columns="defense", values="acc")
    after = after[ordered(list(after.columns), list(LABELS))].drop(columns=["none"], errors="ignore")
    original = ours.groupby(["dataset", "model"]).acc_before.mean().rename("acc_original")
    theirs = paper.set_index(["dataset", "model"])[["acc_original", "acc_unit"]].add_prefix("paper_")
    out = pd.concat([original, after.add_prefix("acc_")], axis=1).join(theirs, how="left").reset_index()
    out.attrs["setting"] = setting(clean)
    return out


def cost(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset/model pair and defense: the one-core minutes (defense wall-clock x torch threads) of its
    cells, clean model included: median, min and max per cell, and the column's total; then each pair's
    total. What a grid cost, comparable across thread counts; records without a thread count (older than
    ``compute``) are counted in ``untimed`` and left out of the minutes."""
    cells = frame[frame.defense != "none"]
    if cells.empty:
        raise ValueError("no records of a defense")
    threads = cells.get("compute.threads", pd.Series(float("nan"), index=cells.index))
    cells = cells.assign(minutes=cells.defense_s * threads / 60, untimed=threads.isna())
    keys = ["dataset", "model", "defense"]
    grouped = cells.groupby(keys, sort=False)
    out = grouped.minutes.agg(["median", "min", "max"]).join(grouped.minutes.sum(min_count=1).rename("total"))
    out = out.join(grouped.size().rename("cells")).join(grouped.untimed.sum()).reset_index()
    order = [*ordered(out.defense, first_seen(paper_table1().defense)), "all"]
    totals = out.groupby(["dataset", "model"], as_index=False)[["total", "cells", "untimed"]].sum(min_count=1)
    out = pd.concat([out, totals.assign(defense="all")], ignore_index=True)

    def by_order(column: pd.Series) -> pd.Series:  # defenses in the paper's column order, "all" last
        return column.map(order.index) if column.name == "defense" else column

    out = out.sort_values(keys, key=by_order, ignore_index=True)
    out = out[[*keys, "cells", "untimed", "median", "min", "max", "total"]]
    out.attrs["processors"] = sorted(cells.get("compute.cpu", pd.Series(dtype=str)).dropna().unique())
    return out
