"""The paper's tables as text: Markdown and LaTeX of Table 1 (the paper's numbers beside ours, best per row
in bold, flagged cells marked), Table 2 and the cost table; display names; the agreement map's marks. A gap
is an en dash (``--`` in LaTeX), never a zero."""

from __future__ import annotations

import pandas as pd

from bench.report.statistics import (
    AVERAGE,
    KEPT,
    LABELS,
    MIN_SPEARMAN,
    PAPER_PAIR,
    REMOVED_MAX,
    SURVIVED_MIN,
    outcome,
    spearman,
    wide,
)
from bench.run.records import COLLAPSE_DROP

GAP = "–"
WARNED = " †"


def label(name: str) -> str:
    return LABELS.get(name, name)


def best_mask(values: pd.DataFrame, lower_is_better: bool) -> pd.DataFrame:
    """True where a repaired model is the best of its row (``none``, the undefended model, never is), in
    rows where at least two repaired models compete."""
    repaired = values.drop(columns=["none"], errors="ignore")
    best = repaired.min(axis=1) if lower_is_better else repaired.max(axis=1)
    competing = repaired.notna().sum(axis=1) >= 2
    mask = repaired.eq(best, axis=0) & repaired.notna() & competing.to_numpy()[:, None]
    return mask.reindex(columns=values.columns, fill_value=False)


def cell_text(
    ours: float, paper: float, bold: bool, latex: bool, warned: bool = False, spread: float = float("nan")
) -> str:
    text = ("--" if latex else GAP) if pd.isna(ours) else f"{ours:.2f}"
    if bold and not pd.isna(ours):
        text = f"\\textbf{{{text}}}" if latex else f"**{text}**"
    if not pd.isna(spread):  # a mean over seeds: the half-width of its 95% interval
        text += f"$\\pm${spread:.2f}" if latex else f" ±{spread:.2f}"
    if warned:
        text += "$^\\dagger$" if latex else WARNED
    if not pd.isna(paper):
        text += f" {{\\scriptsize({paper:.2f})}}" if latex else f" ({paper:.2f})"
    return text


def formatted(table: pd.DataFrame, metric: str, latex: bool = False) -> pd.DataFrame:
    """attack x defense strings 'ours (paper)', the row's best repaired value in bold, '±h' after a mean
    over seeds (the half-width of its 95% interval)."""
    ours, paper = wide(table, metric), wide(table, f"paper_{metric}")
    ci = f"{metric}_ci95"
    spread = wide(table.assign(**{ci: table.get(ci, float("nan"))}), ci)
    # a gap pivots to NaN, so the flags are filled and made plain bools once, here
    flags = wide(table.assign(warned=table.get("warned", False)), "warned").fillna(False).astype(bool)
    bold = best_mask(ours.mask(flags), lower_is_better=metric == "asr")
    out = pd.DataFrame(
        [[cell_text(ours.iat[i, j], paper.iat[i, j], bold.iat[i, j], latex, flags.iat[i, j], spread.iat[i, j])
          for j in range(ours.shape[1])]
         for i in range(ours.shape[0])],
        index=[label(a) for a in ours.index], columns=[label(d) for d in ours.columns],
    )  # fmt: skip
    out.index.name = "attack"
    return out


# the agreement map's marks, none of which looks like another or like the tables' gap (an en dash)
SURVIVES_MORE, SURVIVES_LESS, NO_NUMBER = "▲", "▼", "·"

NOT_APPLICABLE = "n/a"
SEEDS_SPLIT = "⇅"  # appended to a mark: the cell's seeds fall in different classes


def agreement(table: pd.DataFrame) -> pd.DataFrame:
    """attack x defense marks comparing the ASR outcome of ours with the paper's: ``=`` the same class,
    ``SURVIVES_MORE`` the backdoor fares better with us (a higher class), ``SURVIVES_LESS`` worse;
    ``NO_NUMBER`` where either number is missing; ``n/a`` in a row whose victim has no backdoor (nothing to
    remove, so not counted); ``SEEDS_SPLIT`` after the mark of a cell whose seeds' ASRs fall in different
    classes (the mean's class is the one compared). The last row counts the agreeing cells of each
    defense."""
    cells = table[~table.attack.isin([AVERAGE, KEPT]) & (table.defense != "none")]
    unbackdoored = cells.attack.isin(table.attrs.get("no_backdoor", []))
    ours, theirs = outcome(cells.asr.where(~unbackdoored)), outcome(cells.paper_asr)
    mark = (ours - theirs).map(
        lambda d: NO_NUMBER if pd.isna(d) else "=" if d == 0 else SURVIVES_MORE if d > 0 else SURVIVES_LESS
    )
    mark = mark.where(~unbackdoored, NOT_APPLICABLE)
    mark = mark.where(~cells.seeds_split.eq(True), mark + SEEDS_SPLIT)
    marks = wide(cells.assign(mark=mark), "mark")
    both = cells.assign(agree=ours.eq(theirs), both=ours.notna() & theirs.notna())
    counts = both.groupby("defense", sort=False)[["agree", "both"]].sum()
    marks.loc["Agree"] = [f"{counts.agree[d]}/{counts.both[d]}" for d in marks.columns]
    marks.index = [label(a) for a in marks.index]
    marks.columns = [label(d) for d in marks.columns]
    marks.index.name = "attack"
    return marks


def strings_markdown(body: pd.DataFrame) -> str:
    """A frame of final strings as markdown, numbers right-aligned; tabulate would reformat a column of
    bare numbers ('87.6') if it parsed them."""
    return body.to_markdown(colalign=("left",) + ("right",) * len(body.columns), disable_numparse=True)


def averages_markdown(table: pd.DataFrame) -> str:
    """The average row of each metric across the defenses, 'ours (paper)': the README's headline."""
    average = table[table.attack == AVERAGE].set_index("defense")
    kept = table[table.attack == KEPT].set_index("defense")
    who = "ours (paper)" if average.filter(like="paper_").notna().any().any() else "ours"
    rows = {
        f"{metric.upper()}, {who}{note}": [
            cell_text(frame.at[d, metric], frame.at[d, f"paper_{metric}"], bold=False, latex=False)
            for d in average.index
        ]
        for frame, note in ((average, ""), (kept, ", collapsed cells left out"))
        for metric in ("asr", "acc")
    }
    body = pd.DataFrame(rows, index=[label(d) for d in average.index]).T
    body.index.name = "average over the attacks"
    return strings_markdown(body)


def table1_markdown(table: pd.DataFrame) -> str:
    rho, n = spearman(table)
    cells = table[~table.attack.isin([AVERAGE, KEPT])]
    dataset, model = table.attrs.get("pair", ("?", "?"))
    paper_note = "" if (dataset, model) == PAPER_PAIR else (
        f" The paper's numbers are for {PAPER_PAIR[0]} / {PAPER_PAIR[1]} and are not shown beside these."
    )  # fmt: skip
    recorded = f"{int(cells.acc.notna().sum())} of {len(cells)} cells have a record"
    parts = [
        f"Table 1 on {dataset} / {model}{table.attrs.get('setting', '')}. {recorded}.{paper_note}\n",
        f"### Averages over the attacks\n\n{averages_markdown(table)}\n",
    ]
    for metric, title in (("asr", "ASR (%)"), ("acc", "ACC (%)")):
        body = strings_markdown(formatted(table, metric))
        parts.append(f"### {title}: {'ours (paper)' if not paper_note else 'ours'}\n\n{body}\n")
    spearman_text = spearman_words(rho, n)
    rho_kept, n_kept = spearman(table, row=KEPT)
    parts.append(
        f"Spearman correlation of our per-defense average ASR with the paper's: {spearman_text}; "
        f"with collapsed cells left out of each average: {spearman_words(rho_kept, n_kept)}.\n"
        f"Bold: the best repaired model of a row (lowest ASR, highest ACC) where two or more compete. "
        f"{GAP}: no record for the cell. ±: after a mean over seeds, the half-width of its 95% interval "
        "(Student's t; the seed count is the CSV's n_seeds). "
        "Averages are over the attacks with a record in every column, the paper's over the same attacks"
        f"{left_out(table)}. "
        f"{WARNED}: the cell's record carries a sanity warning (bench/run/records.py: a model at chance, a "
        "backdoor that did not take, a defense that changed nothing) or its repaired model collapsed "
        f"(more than {COLLAPSE_DROP:g} points of ACC below its victim); it is never bold. "
        "The collapsed cells stay in the first average row and are left out of the second.\n"
    )
    if not paper_note:
        marks = agreement(table)
        marks = marks.to_markdown(colalign=("left",) + ("center",) * len(marks.columns))
        parts.append(
            f"### Where we agree with the paper (ASR outcome)\n\n{marks}\n\n"
            f"Each cell's ASR, ours and the paper's, is classed as removed (<= {REMOVED_MAX:g}%), partly "
            f"removed, or survived (>= {SURVIVED_MIN:g}%). =: the same class; {SURVIVES_MORE}: the backdoor "
            f"fares better with us than in the paper (a higher class); {SURVIVES_LESS}: worse; {NO_NUMBER}: "
            f"ours or the paper's number is missing; {NOT_APPLICABLE}: the victim has no backdoor; "
            f"{SEEDS_SPLIT} after a mark: the cell's seeds fall in different classes (the mark is the "
            f"mean's). Agree: cells in the same class of those with both numbers. ASR only: the ACC table "
            f"above says what a removal cost (a collapsed model also has a low ASR).\n"
        )
    return "\n".join(parts)


def spearman_words(rho: float, n: int) -> str:
    if n >= MIN_SPEARMAN:
        return f"{rho:.2f} over {n} defenses"
    return f"not computed ({n} defenses with both numbers; it needs {MIN_SPEARMAN})"


def left_out(table: pd.DataFrame) -> str:
    """The clauses naming the rows the averages leave out, empty when none is."""
    clauses = []
    if names := [label(a) for a in table.attrs.get("incomplete", [])]:
        clauses.append(
            f", leaving out {', '.join(names)}: some column has no record of the row, and every column is "
            "averaged over the same attacks"
        )
    if names := [label(a) for a in table.attrs.get("no_backdoor", [])]:
        clauses.append(
            f", leaving out {', '.join(names)}: the victim's backdoor did not take (its ASR before any "
            "defense is at chance), so its cells measure no removal; they are not counted in the agreement "
            "map either"
        )
    return "".join(clauses)


def table1_latex(table: pd.DataFrame) -> str:
    """The paper's layout: one row per attack, an ACC and an ASR column per defense."""
    acc, asr = formatted(table, "acc", latex=True), formatted(table, "asr", latex=True)
    columns = pd.MultiIndex.from_product([acc.columns, ["ACC", "ASR"]])
    body = pd.concat([acc, asr], axis=1, keys=["ACC", "ASR"]).swaplevel(axis=1)[columns]
    return body.style.to_latex(hrules=True, multicol_align="c", column_format="l" + "rr" * len(acc.columns))


def table2_markdown(table: pd.DataFrame) -> str:
    """Table 2 with its heading: readable column names, the paper's values where it has the pair."""
    names = {"acc_original": "No defense", "paper_acc_original": "Paper: no defense",
             "paper_acc_unit": "Paper: UNIT"}  # fmt: skip
    names |= {
        c: label(c.removeprefix("acc_")) for c in table.columns if c.startswith("acc_") and c not in names
    }
    return (
        f"Table 2: ACC (%) of clean models (attack=none) with no defense and after each defense"
        f"{table.attrs.get('setting', '')}. The paper's columns are for its own dataset/model pairs and "
        f"training; {GAP} where it has none.\n\n" + shown(table.rename(columns=names)) + "\n"
    )


def shown(table: pd.DataFrame) -> str:
    """A markdown table with floats to two decimals and gaps as en dashes (tabulate parses the numeric
    strings back into numbers, hence floatfmt as well)."""
    cells = table.map(lambda v: GAP if pd.isna(v) else f"{v:.2f}" if isinstance(v, float) else v)
    return cells.to_markdown(index=False, floatfmt=".2f")


def cost_markdown(table: pd.DataFrame) -> str:
    names = {"median": "median min/cell", "total": "one-core min"}
    cells = table.assign(defense=table.defense.map(label)).rename(columns=names)
    return (
        "Compute per defense column: one-core minutes (the defense's wall-clock x its torch threads; "
        "evaluation and victim training excluded) of every cell that ran it, the clean model included. "
        f"untimed: records without a thread count, left out of the minutes. {GAP}: nothing to show. "
        f"Processors: {', '.join(table.attrs.get('processors', [])) or 'not recorded'}.\n\n{shown(cells)}\n"
    )
