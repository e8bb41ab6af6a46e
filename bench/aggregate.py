"""Result records -> pandas. Reads only the JSON records (never W&B or logs).

``python -m bench.aggregate RUNS_DIR [--by defense.schedule ...]`` prints one markdown row per cell.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bench.records import read_records

METRICS = [
    "acc_clean_model",
    "acc_before",
    "asr_before",
    "acc",
    "asr",
    "ra",
    "der",
    "attack_train_s",
    "defense_s",
]


def records_frame(results_dir: str | Path) -> pd.DataFrame:
    """One row per record; the resolved config is flattened into ``config.<group>.<key>`` columns."""
    records = read_records(results_dir)
    if not records:
        raise FileNotFoundError(f"no records in {results_dir}")
    return pd.json_normalize(records)


def cell_table(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Cells with their metrics; ``by`` adds config columns (``defense.z`` reads config.defense.z)."""
    extra = [f"config.{k}" for k in by]
    missing = [c for c in extra if c not in frame]
    if missing:
        raise KeyError(f"no such config columns in the records: {missing}")
    table = frame[["dataset", "model", "attack", "defense", *extra, *METRICS]].rename(
        columns={f"config.{k}": k for k in by}
    )
    return table.sort_values(["dataset", "model", "attack", "defense", *by], na_position="first")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir")
    p.add_argument("--by", nargs="*", default=[], help="config keys that tell cells apart, e.g. defense.z")
    p.add_argument("--attack", nargs="*", help="only these attacks")
    p.add_argument("--defense", nargs="*", help="only these defenses")
    args = p.parse_args()
    frame = records_frame(args.results_dir)
    if args.attack:
        frame = frame[frame.attack.isin(args.attack)]
    if args.defense:
        frame = frame[frame.defense.isin(args.defense)]
    table = cell_table(frame, args.by)
    print(
        table.astype(object)
        .where(table.notna(), None)
        .to_markdown(index=False, floatfmt=".2f", missingval="")
    )


if __name__ == "__main__":
    main()
