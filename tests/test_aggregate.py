"""The aggregator reads records only and keeps a missing value a gap, not a zero."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.report.aggregate import cell_table, records_frame, victim_table


def write(path: Path, **fields: object) -> None:
    record = {"dataset": "d", "model": "m", "acc_clean_model": None, "acc_before": 90.0, "asr_before": 100.0,
              "acc": 89.0, "asr": 1.0, "ra": 88.0, "der": 99.0, "attack_train_s": 1.0, "defense_s": 2.0,
              "config": {"defense": {"z": 1.5}}} | fields  # fmt: skip
    path.write_text(json.dumps(record))


def test_cells_with_config_columns(tmp_path: Path) -> None:
    write(tmp_path / "a.json", attack="badnets", defense="clip_uniform")
    write(tmp_path / "b.json", attack="none", defense="none", asr=None, config={"defense": {}})
    table = cell_table(records_frame(tmp_path), ["defense.z"])
    assert list(table.attack) == ["badnets", "none"]
    assert table.iloc[0]["defense.z"] == 1.5
    assert table.iloc[1]["asr"] != table.iloc[1]["asr"]  # NaN: a gap, not 0


def test_unknown_column_and_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        records_frame(tmp_path)
    write(tmp_path / "a.json", attack="badnets", defense="ft")
    with pytest.raises(KeyError, match="config.defense.nope"):
        cell_table(records_frame(tmp_path), ["defense.nope"])


def test_victim_table_reports_the_accuracy_cost(tmp_path: Path) -> None:
    write(tmp_path / "a.json", attack="badnets", defense="none", acc_clean_model=91.0, acc_before=90.0,
          ra_before=0.5, aux_train_s=3.0, config={"attack": {"variant": "paper"}})  # fmt: skip
    write(tmp_path / "b.json", attack="badnets", defense="ft", acc_clean_model=91.0)
    table = victim_table(records_frame(tmp_path), ["attack.variant"])
    assert len(table) == 1 and table.iloc[0]["attack.variant"] == "paper"
    assert table.iloc[0]["d_acc"] == -1.0 and table.iloc[0]["ra_before"] == 0.5


def test_victims_come_from_every_record(tmp_path: Path) -> None:
    """A victim whose defense=none cell never ran is still listed (its repaired cells hold its numbers);
    two records of one victim, by its model-cache file, are one row, its own none cell preferred."""
    write(tmp_path / "a.json", attack="blend", defense="unit", acc_before=89.0, victim_checkpoint="c/v1.pt")
    write(
        tmp_path / "b.json", attack="badnets", defense="ft", victim_checkpoint="c/v2.pt", attack_train_s=9.0
    )
    write(
        tmp_path / "c.json", attack="badnets", defense="none", victim_checkpoint="c/v2.pt", attack_train_s=5.0
    )
    write(tmp_path / "d.json", attack="sig", defense="nad", seed=0)  # older record: no checkpoint named
    write(tmp_path / "e.json", attack="sig", defense="anp", seed=0)
    table = victim_table(records_frame(tmp_path), []).set_index("attack")
    assert sorted(table.index) == ["badnets", "blend", "sig"]
    assert table.loc["blend", "acc_before"] == 89.0 and table.loc["badnets", "attack_train_s"] == 5.0


def test_older_records_read_with_the_keys_added_since(tmp_path: Path) -> None:
    """A clean model recorded before ``precision`` existed ran at its default: it is the clean model of a
    newer victim record that names the default, and not of one at another precision."""
    write(tmp_path / "clean.json", attack="none", defense="none", acc_before=91.5, config={"seed": 0})
    for precision in ("auto", "bf16"):
        config = {"seed": 0, "precision": precision}
        write(tmp_path / f"{precision}.json", attack="badnets", defense="ft", config=config)
    frame = records_frame(tmp_path)
    assert (frame["config.train.label_smoothing"] == 0.0).all()
    victims = frame[frame.attack == "badnets"].set_index("config.precision")
    assert victims.loc["auto", "acc_clean_model"] == 91.5 and pd.isna(victims.loc["bf16", "acc_clean_model"])
