"""scripts/grid.py: a grid is an experiment file plus one runner; its sweeps cover the same cells from
different ends."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.catalogue import options
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import grid  # noqa: E402


def test_the_experiments_sweep_gives_the_attacks() -> None:
    table1 = [a for a in options("attack") if a not in ("combat", "narcissus")]  # the appendix's excluded
    assert grid.attack_list("cpu_cifar_table1", []) == table1
    assert grid.attack_list("cpu_cifar_table1", ["attack=blend,badnets"]) == ["blend", "badnets"]
    assert grid.attack_list("cpu_cifar", ["attack=glob(*,exclude=[none,dfst])"]) == [
        a for a in options("attack") if a not in ("none", "dfst")
    ]


def test_an_experiment_without_an_attack_sweep_asks_for_the_attacks() -> None:
    with pytest.raises(SystemExit, match="sweeps no attacks"):
        grid.attack_list("cpu_cifar", [])


def test_two_sweeps_take_the_attacks_from_opposite_ends_with_the_same_overrides() -> None:
    forward, reverse = grid.sweep_commands("cpu_cifar", ["attack=a,b,c", "seed=1", "defense=ft,unit"], 2, "g")
    assert "attack=a,b,c" in forward and "attack=c,b,a" in reverse
    for command in (forward, reverse):
        assert command[1:5] == ["-m", "bench", "-m", "experiment=cpu_cifar"]
        assert command[6:8] == ["seed=1", "defense=ft,unit"] and command[-1].startswith(
            "hydra.sweep.dir=multirun/g/"
        )
    three = grid.sweep_commands("cpu_cifar", ["attack=a,b,c"], 3, "g")
    assert [c[5] for c in three] == ["attack=a,b,c", "attack=c,b,a", "attack=c,a,b"]


def test_the_runner_starts_its_sweeps_and_reports_their_status(tmp_path) -> None:
    """Both sweeps run (here as dry runs) from the caller's folder and the runner exits 0; a failing
    sweep makes it exit 1."""
    script = str(REPO / "scripts" / "grid.py")
    command = [sys.executable, script, "smoke", "attack=badnets,blend", "defense=none", "dry_run=true",
               "logger=none", f"output_root={tmp_path}"]  # fmt: skip
    ok = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("dry run: 2 cells") == 2
    bad = subprocess.run([*command, "defense.nonexistent=1"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 1
