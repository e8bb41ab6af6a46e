"""Sweeps on a real (single-node, localhost) SLURM cluster through ``hydra/launcher=slurm_gpu``: the
records of a 4-cell sweep come back, and a job killed with SIGKILL surfaces as a failed cell, leaves no
partial record, and reruns cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.run.records import read_records
from tests.conftest import REPO, SMOKE_DATASET, needs_smoke_data
from tests.slurm_cluster import ClusterError, LocalSlurm, missing_requirements

pytestmark = [pytest.mark.slurm, needs_smoke_data]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    slurm = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        slurm.start()
    except ClusterError as exc:
        slurm.stop()
        if os.environ.get("CI"):
            raise  # CI installs the packages and runs as root: a cluster that cannot start is a failure
        pytest.skip(f"the SLURM daemons did not start here: {exc}")
    except BaseException:
        slurm.stop()  # any other failure of start() must not leave daemons behind either
        raise
    try:
        yield slurm
    finally:
        slurm.stop()


def sweep(cluster: LocalSlurm, tmp: Path, *overrides: str) -> subprocess.Popen:
    """``python -m bench -m experiment=smoke ... hydra/launcher=slurm_gpu`` (one fake GPU per cell)."""
    args = [sys.executable, "-m", "bench", "-m", "experiment=smoke", f"dataset={SMOKE_DATASET}",
            "hydra/launcher=slurm_gpu",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10",
            f"results_dir={tmp}/runs", f"cache_dir={tmp}/cache", f"hydra.sweep.dir={tmp}/sweep",
            *overrides]  # fmt: skip
    env = {**cluster.env, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    out = subprocess.PIPE
    return subprocess.Popen(args, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 480) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def test_four_cell_sweep_returns_its_records(cluster: LocalSlurm, tmp_path: Path) -> None:
    code, out = finish(sweep(cluster, tmp_path, "attack=badnets,blend", "defense=none,ft"))
    assert code == 0, out
    cells = sorted((r["attack"], r["defense"]) for r in read_records(tmp_path / "runs"))
    assert cells == [("badnets", "ft"), ("badnets", "none"), ("blend", "ft"), ("blend", "none")]
    array_tasks = cluster.run("sacct", "-n", "-X", "-o", "JobID").stdout.split()
    assert len(array_tasks) == 4 and len({t.split("_")[0] for t in array_tasks}) == 1  # one job array


def running_task_pids(cluster: LocalSlurm, task: str) -> list[int]:
    """PIDs of the job step (the cell's Python process) of the running array task ``task``."""
    for line in cluster.run("squeue", "-h", "-o", "%A %K %t").stdout.splitlines():
        job, array_task, state = line.split()
        if array_task == task and state == "R":
            listed = cluster.run("scontrol", "listpids", job, check=False).stdout.splitlines()[1:]
            return [int(cols[0]) for cols in map(str.split, listed) if cols[2] == "0"]
    return []


def test_killed_job_is_a_failed_cell_not_a_hang(cluster: LocalSlurm, tmp_path: Path) -> None:
    overrides = ("attack=badnets", "defense=none", "train.epochs=1,12")  # task 1 trains long enough to kill
    proc = sweep(cluster, tmp_path, *overrides)
    deadline = time.monotonic() + 240
    pids: list[int] = []
    while not pids and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(2)
        pids = running_task_pids(cluster, "1")
    assert pids, "task 1 never ran"
    time.sleep(8)  # mid-way: past start-up, inside training
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    code, out = finish(proc)
    assert code != 0 and "FAILED" in out, out
    (record,) = read_records(tmp_path / "runs")  # the finished cell only, nothing partial of the killed one
    assert record["config"]["train"]["epochs"] == 1

    code, out = finish(sweep(cluster, tmp_path, *overrides))  # resume: cell 0 skipped, cell 1 redone
    assert code == 0, out
    assert sorted(r["config"]["train"]["epochs"] for r in read_records(tmp_path / "runs")) == [1, 12]
    logs = "".join(p.read_text() for p in (tmp_path / "sweep" / "0").glob("*.log"))
    assert "record exists, cell skipped" in logs
