"""Result records: one JSON file per grid cell, the contract between runs and the aggregator.

Field names are fixed (other issues and tools read them); bump ``SCHEMA_VERSION`` when a field
disappears or changes meaning, not when one is added.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.cache import atomic_write_bytes

SCHEMA_VERSION = 1

FIELDS = (
    "schema_version", "cell_id", "dataset", "model", "attack", "defense", "seed",
    "acc_clean_model", "acc_before", "asr_before", "ra_before", "acc", "asr", "ra", "der",
    "attack_train_s", "aux_train_s", "defense_s", "eval_s", "cache_hit", "device", "compute", "git_sha",
    "started_at", "finished_at", "config", "attack_info", "defense_info", "detection_info",
)  # fmt: skip


def record_path(results_dir: str | Path, cell_id: str) -> Path:
    return Path(results_dir) / f"{cell_id}.json"


def failure_path(results_dir: str | Path, cell_id: str) -> Path:
    """Where a failed cell's error is kept (JSON, but not a ``*.json`` record: never read as a result);
    removed when the cell later succeeds."""
    return Path(results_dir) / f"{cell_id}.failed"


def claim_path(results_dir: str | Path, cell_id: str) -> Path:
    """The lock file a process holds while it runs the cell (hidden, and not a ``*.json`` record)."""
    return Path(results_dir) / f".{cell_id}.claim"


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write atomically, so a killed job never leaves a partial record."""
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise ValueError(f"record lacks fields {missing}")
    text = json.dumps({f: record[f] for f in FIELDS}, indent=2, default=str) + "\n"
    atomic_write_bytes(path, lambda tmp: tmp.write_text(text))


def read_records(results_dir: str | Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("*.json"))]
