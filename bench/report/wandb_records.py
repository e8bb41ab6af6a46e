"""Result records read back from Weights & Biases, for users whose runs live there rather than in
``results_dir``: offline run directories (``wandb/offline-run-*``, read with ``wandb leet inspect``) or,
online, a project through the public API. Each W&B run of a cell carries the record's identity, metrics
and config (``bench.run.wandb_logger``), so the aggregator builds the same frame from either source.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.run.records import IDENTITY_KEYS, SUMMARY_KEYS

INFO_PREFIX = "defense_info/"


def wandb_cli() -> str:
    """The ``wandb`` executable of this interpreter's environment (else the one on PATH)."""
    beside = Path(sys.executable).with_name("wandb")
    found = str(beside) if beside.exists() else shutil.which("wandb")
    if found is None:
        raise FileNotFoundError("the wandb command is not installed")
    return found


def as_record(summary: dict[str, Any], config: dict[str, Any]) -> dict[str, Any] | None:
    """A record from one run's summary and config; None for a run that is not a bench cell."""
    if any(k not in summary for k in IDENTITY_KEYS):
        return None
    record = {k: summary.get(k) for k in (*IDENTITY_KEYS, *SUMMARY_KEYS)}
    info = {k.removeprefix(INFO_PREFIX): v for k, v in summary.items() if k.startswith(INFO_PREFIX)}
    record["defense_info"] = info
    record["config"] = config
    return record


def read_offline(wandb_dir: str | Path) -> list[dict[str, Any]]:
    """Records of the offline runs under ``wandb_dir`` (any depth), oldest first."""
    runs = sorted(Path(wandb_dir).rglob("offline-run-*"))
    records = []
    for run in runs:
        out = subprocess.run([wandb_cli(), "leet", "inspect", "--summary", "--json", str(run)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        state = json.loads(out.stdout)
        record = as_record(state.get("summary", {}), state.get("config", {}))
        if record is not None:
            records.append(record)
    return records


def read_api(path: str) -> list[dict[str, Any]]:
    """Records of the runs of an online project ``entity/project`` (needs network and a W&B login)."""
    import wandb

    runs = wandb.Api().runs(path)
    records = (as_record(dict(run.summary), dict(run.config)) for run in runs)
    return [r for r in records if r is not None]
