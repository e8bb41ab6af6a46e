"""Result records -> pandas -> the paper's tables and figures.

``python -m bench.report RUNS_DIR [RUNS_DIR...]`` prints one markdown row per cell of the directories
read together (``--by defense.schedule`` adds config columns, ``--victims`` gives one row per backdoored
model); ``--out DIR`` writes Table 1 (``table1.md``, ``.csv``, ``.tex``: the paper's pair when the records
hold several, each other pair in ``table1_<dataset>_<model>.*``; as heatmaps ``table1_heatmap.png``,
``.pdf``), Table 2 (``table2.md``, ``.csv``), Fig. 5 and Fig. 6 (``.png``, ``.pdf``) and the compute of
each defense column (``cost.md``, ``.csv``), each when the records hold what it needs. ``--wandb`` reads
the records from W&B instead: RUNS_DIR is then a directory of offline runs, or ``entity/project`` online.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from bench.report import figures, render, statistics
from bench.report.wandb_records import read_api, read_offline
from bench.run.identity import MODEL_KEYS, filled_later_keys
from bench.run.records import read_records, record_fields

METRICS = list(record_fields(table=True))  # the per-cell columns


def read_source(source: str | Path, wandb: bool) -> list[dict]:
    if not wandb:
        return read_records(source)
    return read_offline(source) if Path(source).exists() else read_api(str(source))


def records_frame(*sources: str | Path, wandb: bool = False) -> pd.DataFrame:
    """One row per record of every source (directories of JSON records, or W&B runs with ``wandb``); the
    resolved config is flattened into ``config.<group>.<key>`` columns."""
    records = [r for source in sources for r in read_source(source, wandb)]
    if not records:
        raise FileNotFoundError(f"no records in {', '.join(map(str, sources))}")
    return pd.json_normalize(with_clean_accuracy(with_later_keys(records)))


def with_later_keys(records: list[dict]) -> list[dict]:
    """Give every record's config the keys added after it ran (``LATER_KEYS``) at the value it ran with, so
    an older record and a newer one of the same setting agree on them (tables, clean-model lookup)."""
    return [{**r, "config": filled_later_keys(r["config"])} if isinstance(r.get("config"), dict) else r
            for r in records]  # fmt: skip


def victim_setting(record: dict) -> str:
    """What a row's clean model shares with its victims: data, architecture, recipe, seed, precision."""
    config = record.get("config") or {}
    return json.dumps({k: config.get(k) for k in MODEL_KEYS}, sort_keys=True, default=str)


def with_clean_accuracy(records: list[dict]) -> list[dict]:
    """Fill ``acc_clean_model`` where a record lacks it (its cell ran before the row's clean model was
    trained) from the clean model's own record, so a table does not depend on the order cells ran in."""
    clean = {victim_setting(r): r["acc_before"] for r in records
             if r.get("attack") == "none" and r.get("acc_before") is not None}  # fmt: skip
    return [r if r.get("acc_clean_model") is not None
            else {**r, "acc_clean_model": clean.get(victim_setting(r))} for r in records]  # fmt: skip


def cell_table(frame: pd.DataFrame, by: list[str], extra_metrics: list[str] | None = None) -> pd.DataFrame:
    """Cells with their metrics; ``by`` adds config columns (``defense.z`` reads config.defense.z) and
    ``extra_metrics`` other record columns (``detection_info.tpr``), gaps where a record lacks them."""
    extra = [f"config.{k}" for k in by]
    missing = [c for c in extra if c not in frame]
    if missing:
        raise KeyError(f"no such config columns in the records: {missing}")
    # reindex: records older than a metric (e.g. aux_train_s) show it as a gap
    columns = ["dataset", "model", "attack", "defense", *extra, *METRICS, *(extra_metrics or [])]
    table = frame.reindex(columns=columns).rename(columns={f"config.{k}": k for k in by})
    return table.sort_values(["dataset", "model", "attack", "defense", *by], na_position="first")


VICTIM_METRICS = ["acc_clean_model", "acc_before", "d_acc", "asr_before", "ra_before", "attack_train_s",
                  "aux_train_s"]  # fmt: skip


def victims(frame: pd.DataFrame) -> pd.DataFrame:
    """One record per backdoored model. Every record holds its victim's numbers, so a victim counts
    whether or not its ``defense=none`` cell ran (that cell's record is kept when it did); a victim is its
    cell without the defense and its own ACC/ASR (two victims of one attack and seed that agree on both
    to the last digit are taken as one)."""
    identity = frame.reindex(columns=["dataset", "model", "attack", "seed", "acc_before", "asr_before"])
    frame = frame.assign(victim=identity.apply(lambda row: "|".join(map(str, row)), axis=1))
    frame = frame.sort_values("defense", key=lambda d: d.ne("none"), kind="stable").drop_duplicates("victim")
    return frame.drop(columns="victim")


def victim_table(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per backdoored model (``victims``): what each attack achieves, with the accuracy it costs
    against the clean model of the same recipe (``d_acc``)."""
    frame = victims(frame).assign(d_acc=lambda f: f.acc_before - f.acc_clean_model)
    table = cell_table(frame, by)
    return table[["dataset", "model", "attack", *by]].join(frame.reindex(columns=VICTIM_METRICS))


def markdown(table: pd.DataFrame) -> str:
    cells = table.astype(object).where(table.notna(), None)
    return cells.to_markdown(index=False, floatfmt=".2f", missingval="")


def write_csv(table: pd.DataFrame, path: Path) -> None:
    """Four significant digits: the tables' precision, without float noise like 88.94000000000001."""
    table.to_csv(path, index=False, float_format="%.4g")


def write_table1(frame: pd.DataFrame, out: Path) -> list[Path]:
    """One Table 1 per dataset/model pair: ``table1.*`` for the paper's pair (or the only one), and
    ``table1_<dataset>_<model>.*`` for each other, so no pair's records are dropped."""
    pairs = statistics.pairs(frame[frame.attack != "none"])
    main = statistics.PAPER_PAIR if statistics.PAPER_PAIR in pairs or not pairs else pairs[0]
    written = []
    for pair in pairs:
        stem = "table1" if pair == main else f"table1_{pair[0]}_{pair[1]}"
        t1 = statistics.table1(frame[(frame.dataset == pair[0]) & (frame.model == pair[1])])
        write_csv(t1, out / f"{stem}.csv")
        (out / f"{stem}.md").write_text(render.table1_markdown(t1))
        (out / f"{stem}.tex").write_text(render.table1_latex(t1))
        written += [out / f"{stem}.{ext}" for ext in ("md", "csv", "tex")]
    return written


def write_table2(frame: pd.DataFrame, out: Path) -> list[Path]:
    t2 = statistics.table2(frame)
    write_csv(t2, out / "table2.csv")
    (out / "table2.md").write_text(render.table2_markdown(t2))
    return [out / "table2.md", out / "table2.csv"]


def write_cost(frame: pd.DataFrame, out: Path) -> list[Path]:
    table = statistics.cost(frame)
    write_csv(table, out / "cost.csv")
    (out / "cost.md").write_text(render.cost_markdown(table))
    return [out / "cost.md", out / "cost.csv"]


WRITERS = {"table1": write_table1, "table1_heatmap": figures.table1_heatmap, "table2": write_table2,
           "fig5": figures.fig5, "fig6": figures.fig6, "cost": write_cost}  # fmt: skip


def write_tables(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Every table and figure the records allow, into ``out``; says which were left out and why. Records
    of different configs in one cell are refused (``statistics.MixedConfigs``), never silently dropped."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, write in WRITERS.items():
        try:
            written += write(frame, out)
        except statistics.MixedConfigs:
            raise
        except ValueError as exc:
            print(f"{name} left out: {exc}")
    return written


def where(frame: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    """Rows whose config matches every ``KEY=VALUE`` (``attack.poison_rate=0.05``; numbers compare as
    numbers)."""
    for condition in conditions:
        key, sep, value = condition.partition("=")
        column = f"config.{key}"
        if not sep or column not in frame:
            raise SystemExit(
                f"error: --where {condition!r}: expected KEY=VALUE with a config key of the records"
            )
        cells = frame[column]
        number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
        numeric = pd.to_numeric(cells, errors="coerce")
        match = numeric.eq(number) if pd.notna(number) else cells.astype(str).eq(value)
        frame = frame[match]
    return frame


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dirs", nargs="+", metavar="RUNS_DIR",
                   help="records directories, read together (or, with --wandb, W&B runs)")  # fmt: skip
    p.add_argument("--out", type=Path, help="write the paper's tables and figures into this directory")
    p.add_argument("--wandb", action="store_true", help="read W&B offline run dirs, or entity/project online")
    p.add_argument("--by", nargs="*", default=[], help="config keys that tell cells apart, e.g. defense.z")
    p.add_argument("--attack", nargs="*", help="only these attacks")
    p.add_argument("--defense", nargs="*", help="only these defenses")
    p.add_argument("--victims", action="store_true", help="one row per backdoored model (from every record)")
    p.add_argument("--metrics", nargs="*", default=[], help="more record columns, e.g. detection_info.tpr")
    p.add_argument("--where", nargs="*", default=[], metavar="KEY=VALUE",
                   help="only records whose config has these values: attack.poison_rate=0.05")  # fmt: skip
    args = p.parse_args()
    frame = where(records_frame(*args.results_dirs, wandb=args.wandb), args.where)
    if args.attack:
        frame = frame[frame.attack.isin(args.attack)]
    if args.defense:
        frame = frame[frame.defense.isin(args.defense)]
    if frame.empty:
        raise SystemExit(f"error: no records in {', '.join(args.results_dirs)} match the filters")
    if args.out:
        try:
            for path in write_tables(frame, args.out):
                print(f"wrote {path}")
        except statistics.MixedConfigs as exc:
            raise SystemExit(f"error: {exc}") from None
        return
    if args.victims:  # what tells victims apart: their own config, not the defenses that repaired them
        frame = victims(frame).drop(columns=[c for c in frame if c.startswith("config.defense.")])
    by = args.by or statistics.differing_config_keys(frame, ["dataset", "model", "attack", "defense", "seed"])
    if by and not args.by:
        print(f"records of one cell differ in {', '.join(by)}: shown as columns (choose with --by / --where)")
    table = victim_table(frame, by) if args.victims else cell_table(frame, by, args.metrics)
    print(markdown(table))


if __name__ == "__main__":
    main()
