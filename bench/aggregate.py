"""Result records -> pandas. Reads only the JSON records (never W&B or logs).

``python -m bench.aggregate RUNS_DIR [--by defense.schedule ...]`` prints one markdown row per cell;
``--victims`` one row per backdoored model (its ``defense=none`` cell).
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
    "aux_train_s",
    "defense_s",
]


def records_frame(results_dir: str | Path) -> pd.DataFrame:
    """One row per record; the resolved config is flattened into ``config.<group>.<key>`` columns."""
    records = read_records(results_dir)
    if not records:
        raise FileNotFoundError(f"no records in {results_dir}")
    return pd.json_normalize(records)


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


def victim_table(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per backdoored model (its ``defense=none`` cell): what each attack achieves, with the
    accuracy it costs against the clean model of the same recipe (``d_acc``)."""
    frame = frame[frame.defense == "none"].assign(d_acc=lambda f: f.acc_before - f.acc_clean_model)
    table = cell_table(frame, by)
    return table[["dataset", "model", "attack", *by]].join(frame.reindex(columns=VICTIM_METRICS))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir")
    p.add_argument("--by", nargs="*", default=[], help="config keys that tell cells apart, e.g. defense.z")
    p.add_argument("--attack", nargs="*", help="only these attacks")
    p.add_argument("--defense", nargs="*", help="only these defenses")
    p.add_argument("--victims", action="store_true", help="one row per backdoored model (defense=none cells)")
    p.add_argument("--metrics", nargs="*", default=[], help="more record columns, e.g. detection_info.tpr")
    args = p.parse_args()
    frame = records_frame(args.results_dir)
    if args.attack:
        frame = frame[frame.attack.isin(args.attack)]
    if args.defense:
        frame = frame[frame.defense.isin(args.defense)]
    table = victim_table(frame, args.by) if args.victims else cell_table(frame, args.by, args.metrics)
    print(
        table.astype(object)
        .where(table.notna(), None)
        .to_markdown(index=False, floatfmt=".2f", missingval="")
    )


if __name__ == "__main__":
    main()
