"""scripts/plot_triggers.py draws the triggers it is asked for, from poisoning alone where the trigger does
not learn with its victim, and refuses an attack it does not know."""

from __future__ import annotations

import sys

import pytest
from PIL import Image

from bench.run.cell import Cell
from tests.conftest import REPO, SMOKE_DATASET

sys.path.insert(0, str(REPO / "scripts"))
import plot_triggers  # noqa: E402


def test_attacks_pick_the_columns_and_an_unknown_attack_is_refused() -> None:
    assert [label for label, _ in plot_triggers.rows(False, ["sig", "badnets"])] == ["badnets", "sig"]
    assert [label for label, _ in plot_triggers.rows(True, ["badnets"])] == ["badnets", "badnets (paper)"]
    assert len(plot_triggers.rows(False)) > 10  # every attack by default
    with pytest.raises(SystemExit, match="no such attack: dsft"):
        plot_triggers.rows(False, ["badnets", "dsft"])


def test_a_single_column_is_drawn_without_training_its_victim(tmp_path, monkeypatch) -> None:
    overrides = ["experiment=smoke", f"dataset={SMOKE_DATASET}", f"cache_dir={tmp_path}/cache"]
    out = tmp_path / "triggers.png"
    argv = ["plot_triggers.py", *overrides, "--attacks", "badnets", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    plot_triggers.main()
    assert Image.open(out).size[1] > 0
    cell = Cell.compose([*overrides, "attack=badnets", "progress=false", "logger=none", "device=cpu"])
    assert cell.cache.meta(cell.victim_key) is None
