"""How far UNIT's bounds moved in each UNIT record: the drop of the bound L1 (the sum over layers of each
layer's mean bound) from its mean + 4 std start to the bounds kept, per layer, per step and per unit of lr.

Adam normalises every element's update, so a bound that keeps a gradient of one sign moves by about lr per
step whatever alpha is; a ratio near 1 in the last column says the search moved the bounds at that speed,
and lr x steps is then the farthest they can get from their start. Prints a markdown table.
Usage: python scripts/unit_bound_travel.py results/cpu/runs results/cpu/runs/table1
"""

from __future__ import annotations

import argparse

import pandas as pd

from bench.run.records import read_records


def travel_table(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        if r["defense"] != "unit":
            continue
        info, cfg = r["defense_info"], r["config"]["defense"]
        drop = info["bound_l1_init"] - info["bound_l1_final"]
        rows.append(
            {
                "attack": r["attack"],
                "schedule": cfg["schedule"],
                "lr": cfg["lr"],
                "best_step": info["best_step"],
                "steps_run": info["steps_run"],
                "l1_init": info["bound_l1_init"],
                "l1_kept": info["bound_l1_final"],
                "drop_%": 100 * drop / info["bound_l1_init"],
                "drop/(layers*best_step*lr)": drop / (info["layers"] * max(info["best_step"], 1) * cfg["lr"]),
                "asr_before": r["asr_before"],
                "asr": r["asr"],
                "acc_before": r["acc_before"],
                "acc": r["acc"],
            }
        )
    # the grid's UNIT cells repeat some single runs (UNIT's steps do not scale with the budget)
    return pd.DataFrame(rows).drop_duplicates().sort_values(["lr", "attack", "schedule"], ignore_index=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="directories of run records")
    args = p.parse_args()
    records = [r for d in args.runs for r in read_records(d)]
    table = travel_table(records)
    print(table.to_markdown(index=False, floatfmt=["g" if c == "lr" else ".2f" for c in table.columns]))


if __name__ == "__main__":
    main()
