"""``python -m bench attack=ia --help`` lists the plug-in's settings with their values and what each may
be (the schema validation enforces); ``--help`` alone keeps Hydra's catalogue, whose descriptions wrap
instead of being cut."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.catalogue import catalogue, options
from bench.run.plugin_help import plugin_help
from tests.conftest import REPO

CATALOGUE = [
    (group, option) for group in ("dataset", "model", "attack", "defense") for option in options(group)
]


@pytest.mark.parametrize(("group", "option"), CATALOGUE)
def test_every_plug_in_lists_its_settings(group: str, option: str) -> None:
    text = plugin_help([f"{group}={option}"])
    assert text.startswith(f"{group}={option} (")


def test_settings_show_value_resolver_and_range() -> None:
    lines = plugin_help(["experiment=cpu_cifar", "attack=ia"]).splitlines()
    (mask,) = [line.split() for line in lines if line.strip().startswith("mask_epochs")]
    assert mask[:3] == ["mask_epochs", "6", "(${aux_scaled:25})"]  # 25 x the setting's aux_scale 0.25
    (rate,) = [line for line in lines if line.strip().startswith("poison_rate")]
    assert rate.split()[1] == "0.1" and rate.endswith("a number in (0, 1]")


def test_help_with_a_plug_in_exits_0_and_without_one_is_the_catalogue() -> None:
    run = [sys.executable, "-m", "bench"]
    out = subprocess.run([*run, "defense=unit", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and "stop_patience" in out.stdout and "one of 'paper', 'code'" in out.stdout
    out = subprocess.run([*run, "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and "attack=ia --help" in out.stdout and "--resolve" in out.stdout


def test_catalogue_wraps_long_descriptions() -> None:
    lines = catalogue(width=80).splitlines()
    assert all(len(line) <= 80 for line in lines) and not any(line.endswith("...") for line in lines)
