"""Result records: one JSON file per grid cell, the contract between runs and the aggregator.

``Record`` is the one definition of a record's fields: the JSON file, the W&B logger's summary and the
aggregator's columns all read it. Field names are fixed (other issues and tools read them); bump
``SCHEMA_VERSION`` when a field disappears or changes meaning, not when one is added.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.files import atomic_write_bytes

SCHEMA_VERSION = 1


def _field(kind: str, *, table: bool = False) -> Any:
    """A record field of ``kind`` (identity | metric | cost | provenance | info); ``table``: one of the
    aggregator's per-cell columns."""
    return field(metadata={"kind": kind, "table": table})


@dataclass
class Record:
    """One cell's result. Percentages are in 0-100, times in seconds; ``None`` where a metric does not
    apply (ASR without a trigger, the clean model's ACC before it exists)."""

    schema_version: int = _field("identity")
    cell_id: str = _field("identity")
    dataset: str = _field("identity")
    model: str = _field("identity")
    attack: str = _field("identity")
    defense: str = _field("identity")
    seed: int = _field("identity")
    acc_clean_model: float | None = _field("metric", table=True)  # the row's clean model (attack=none)
    acc_before: float = _field("metric", table=True)  # the victim, before the defense
    asr_before: float | None = _field("metric", table=True)
    ra_before: float | None = _field("metric")
    acc: float = _field("metric", table=True)  # after the defense
    asr: float | None = _field("metric", table=True)
    ra: float | None = _field("metric", table=True)
    der: float | None = _field("metric", table=True)
    attack_train_s: float = _field("cost", table=True)  # training the victim
    aux_train_s: float | None = _field("cost", table=True)  # the attack's own networks, before it
    defense_s: float = _field("cost", table=True)
    eval_s: float = _field("cost")
    cache_hit: bool = _field("provenance")  # the victim came from the model cache
    device: str = _field("provenance")
    compute: dict[str, Any] = _field("provenance")  # processor, threads, GPU (and the victim's)
    git_sha: str = _field("provenance")
    started_at: str = _field("provenance")
    finished_at: str = _field("provenance")
    config: dict[str, Any] = _field("info")  # the resolved config the cell ran
    attack_info: dict[str, Any] = _field("info")  # what poisoning reported (JSON)
    defense_info: dict[str, Any] = _field("info")  # what the defense reported about itself (JSON)
    detection_info: dict[str, Any] = _field("info")  # TPR/FPR of a defense that flags inputs
    warnings: list[str] = _field("info")  # sanity flags (sanity_warnings): a number here is no finding
    victim_checkpoint: str | None = _field("provenance")  # the model cache file of the victim
    curves: dict[str, list[float]] = _field("info")  # per-epoch losses: "victim", and the defense's own

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def record_fields(*kinds: str, table: bool | None = None) -> tuple[str, ...]:
    """Names of the record's fields of the given kinds (all without kinds), in record order; ``table``
    keeps only the aggregator's columns (or only the others)."""
    return tuple(
        f.name
        for f in dataclasses.fields(Record)
        if (not kinds or f.metadata["kind"] in kinds) and (table is None or f.metadata["table"] == table)
    )


FIELDS = record_fields()


class RecordLogger:
    """What a configured logger (``conf/logger``, e.g. ``bench.run.wandb_logger.WandbLogger``) offers: it
    receives each finished cell's record, after the record is written."""

    def log_record(self, record: Record) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement log_record(record)")


# What makes a W&B run readable back as a record (bench.report.wandb_records): the record's identity, metrics
# and costs, plus where it ran.
IDENTITY_KEYS = tuple(k for k in record_fields("identity") if k != "schema_version")
SUMMARY_KEYS = (*record_fields("metric", "cost"), "cache_hit", "device")


def record_path(results_dir: str | Path, cell_id: str) -> Path:
    return Path(results_dir) / f"{cell_id}.json"


def failure_path(results_dir: str | Path, cell_id: str) -> Path:
    """Where a failed cell's error is kept (JSON, but not a ``*.json`` record: never read as a result);
    removed when the cell later succeeds."""
    return Path(results_dir) / f"{cell_id}.failed"


def claim_path(results_dir: str | Path, cell_id: str) -> Path:
    """The lock file a process holds while it runs the cell (hidden, and not a ``*.json`` record)."""
    return Path(results_dir) / f".{cell_id}.claim"


def write_record(path: Path, record: Record) -> None:
    """Write atomically, so a killed job never leaves a partial record."""
    text = json.dumps(record.to_dict(), indent=2, default=str) + "\n"
    atomic_write_bytes(path, lambda tmp: tmp.write_text(text))


def read_record(path: Path) -> Record:
    """A record file as a ``Record`` (fields a record predates are None)."""
    stored = json.loads(path.read_text())
    fields = {name: stored.get(name) for name in FIELDS}
    return Record(**fields | {"warnings": fields["warnings"] or [], "curves": fields["curves"] or {}})


def read_records(results_dir: str | Path) -> list[dict[str, Any]]:
    """Every record under ``results_dir`` as stored (dicts: what pandas and the aggregator read)."""
    return [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("*.json"))]


# Sanity flags of a cell: results that are numbers but not findings (a model at chance, a backdoor that
# never took, a defense that did nothing, a detector that flags everything). The record carries them
# (``warnings``), the console line shows them, and the aggregator marks the cells instead of ranking them
# silently.
NEAR_CHANCE = 5.0  # points above chance (100 / classes) still counted as chance
FLAGS_ALL = 90.0  # a detector flagging this share of clean test images flags everything
NO_BACKDOOR = "the backdoor did not take"  # the tables leave such a victim's row out of their averages
AT_CHANCE = "is at chance"  # a record's warning that its victim or repaired model is at chance
# A repaired model more than this many points of ACC below its victim is collapsed: its low ASR is the
# model's failure, not a removal (NAD's CIFAR-10 cells at 24-32% ACC). The tables never bold it.
COLLAPSE_DROP = 10.0


def sanity_warnings(
    num_classes: int,
    defense: str,
    before: dict[str, float | None],
    after: dict[str, float | None],
    detection: dict[str, float],
) -> list[str]:
    """What is suspicious about a cell's metrics (percentages), in words; empty when nothing is."""
    chance = 100.0 / num_classes
    out = []
    if before["acc"] is not None and before["acc"] < chance + NEAR_CHANCE:
        out.append(f"victim ACC {before['acc']:.1f}% {AT_CHANCE} ({chance:.0f}%)")
    if defense != "none" and after["acc"] is not None and after["acc"] < chance + NEAR_CHANCE:
        out.append(f"repaired ACC {after['acc']:.1f}% {AT_CHANCE} ({chance:.0f}%)")
    if before["asr"] is not None and before["asr"] < chance + NEAR_CHANCE:
        out.append(f"ASR {before['asr']:.1f}% before any defense: {NO_BACKDOOR}")
    same = all(before[k] == after[k] for k in ("acc", "asr", "ra"))
    if defense != "none" and same and not detection:
        out.append("the defense changed no prediction")
    if detection.get("fpr", 0.0) >= FLAGS_ALL:
        out.append(f"the detector flags {detection['fpr']:.0f}% of clean test images")
    return out
