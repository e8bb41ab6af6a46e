"""scripts/backdoor_uptake.py: the poisoned set it recomputes is the victim's, and its ASR at the attack's
own blend strength is the victim's recorded ASR."""

from __future__ import annotations

import sys

import pytest

from bench.run import victims
from bench.run.cell import Cell
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import backdoor_uptake  # noqa: E402


def test_uptake_counts_the_attacks_poison_and_reads_the_victims_asr_at_its_own_alpha(smoke_cfg) -> None:
    cell = Cell.of(*smoke_cfg("attack=adap_blend", "attack.poison_rate=0.05", "attack.cover_rate=0.05"))
    row = backdoor_uptake.uptake(cell, [0.2, 0.9])
    victim = victims.load_or_train_victim(cell)
    assert row["poisoned"] == victim.entry.meta.attack_info["poisoned"]
    assert row["cover"] == victim.entry.meta.attack_info["cover"]
    assert row["asr_by_alpha"]["0.2"] == victim.evaluation().metrics["asr"]
    assert 0.0 <= row["poison_fit"] <= 100.0 and 0.0 <= row["cover_fit"] <= 100.0


def test_uptake_refuses_what_it_cannot_measure(smoke_cfg) -> None:
    with pytest.raises(SystemExit, match="needs a blend attack"):
        backdoor_uptake.uptake(Cell.of(*smoke_cfg("attack=badnets")), [0.2])
    in_batch = Cell.of(*smoke_cfg("attack=badnets", "attack_parity=true"))
    with pytest.raises(SystemExit, match="poisons in batches"):
        backdoor_uptake.uptake(in_batch, [])
