"""The GPU estimate (scripts/gpu_estimate.py) scales each measured column by its budget factor, and its
committed page regenerates from the committed cost table and records (so it is redone with every
aggregate)."""

from __future__ import annotations

import runpy
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "gpu_estimate.py"
RESULTS = REPO / "results" / "cpu_cifar"


def test_estimate_scales_median_by_factor_and_throughput_ratio() -> None:
    estimate = runpy.run_path(str(SCRIPT))["estimate"]
    cost = pd.DataFrame({"defense": ["ft", "anp", "all"], "median": [1.0, 2.0, float("nan")]})
    table = estimate(cost, cpu_ips=500.0, gpu_ips=5000.0, rows=15)
    assert list(table.defense) == ["FT", "ANP"]  # "all" is a total, not a column
    assert table["GPU min/cell"].tolist() == pytest.approx([1.0 * 5 / 10, 2.0 * 10 / 10])
    assert table["GPU h for 15 cells"].tolist() == pytest.approx([0.5 * 15 / 60, 2.0 * 15 / 60])


def test_committed_estimate_regenerates() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "results/cpu_cifar"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert out == (RESULTS / "gpu_estimate.md").read_text()
