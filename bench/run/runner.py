"""One grid cell: claim it, repair its victim with the defense, evaluate, write the record (+ W&B).

A cell whose record exists is not run again unless ``overwrite=true``, so sweeps resume where they
stopped. A cell another process is running (it holds the cell's claim) is skipped, so several sweeps over
one list share its cells (``scripts/grid.py`` runs one per core).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout
from hydra.utils import instantiate
from omegaconf import DictConfig

from bench.core.engine import precision
from bench.core.errors import ConfigError
from bench.defenses import Defense, Detector
from bench.run.cell import Cell
from bench.run.host import compute_info, git_sha
from bench.run.identity import CLEAN, GROUPS, cell_label, container, is_clean, victim_key
from bench.run.metrics import der, detection, evaluate
from bench.run.records import SCHEMA_VERSION, Record, RecordLogger, read_record, sanity_warnings, write_record
from bench.run.victims import Victim, load_or_train_victim

log = logging.getLogger(__name__)


class Preempted(BaseException):
    """SIGTERM arrived (what SLURM sends before it kills a preempted or timed-out job). A BaseException,
    so no handler takes it for a failure: the cell stops, its claim is released, nothing is recorded."""


# Set with the raise: the interpreter drops an exception raised inside a finalizer, and then the flag
# still stops the cell before its record is written.
PREEMPTED = threading.Event()


def stop_on_sigterm(signum: int, frame: object) -> None:
    PREEMPTED.set()
    raise Preempted


def build_logger(node: DictConfig | None) -> RecordLogger | None:
    """The configured logger, or None for ``logger=none``; an entry without ``_target_`` is an error."""
    if not node:
        return None
    if "_target_" not in node:
        raise ConfigError(f"logger config has no _target_: {container(node)}")
    return instantiate(node)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_cell(cell: Cell) -> Record | None:
    """Run one cell and return its record (also written to its record path); the existing record when
    there is one (and no ``overwrite``); None when another process holds the cell."""
    path = cell.record_path
    path.parent.mkdir(parents=True, exist_ok=True)
    claim = FileLock(str(cell.claim_path), timeout=0)
    try:
        claim.acquire()
    except Timeout:
        log.info("cell running in another process, skipped: %s", path)
        return None
    try:
        if path.exists() and not cell.cfg.get("overwrite", False):  # checked under the claim: no double run
            log.info("record exists, cell skipped (overwrite=true redoes it): %s", path)
            return read_record(path)
        logger = build_logger(cell.cfg.get("logger"))
        git_sha()  # read now (cached): the record names the code that ran, whatever is committed meanwhile
        log.info("cell %s started; its record will be %s", cell.id, path)
        with precision(cell.precision):  # the victim's training and everything the cell does after it
            record = CellRun(cell).run()
        if PREEMPTED.is_set():
            raise Preempted
        write_record(path, record)
        cell.failure_path.unlink(missing_ok=True)  # a failure of an earlier attempt
        if logger is not None:
            logger.log_record(record)
        return record
    finally:
        claim.release()
        Path(claim.lock_file).unlink(missing_ok=True)


class CellRun:
    """The claimed cell's work, from the cached victim to its record."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell

    def clean_acc(self, victim: Victim) -> float | None:
        """The row's clean model's ACC, from its cache entry's summary (None while it is not trained)."""
        if is_clean(self.cell.sem):
            return victim.entry.meta.acc
        meta = self.cell.cache.meta(victim_key(self.cell.sem, CLEAN))
        return meta["acc"] if meta else None

    def run(self) -> Record:
        cfg, device = self.cell.cfg, self.cell.device
        started_at = now()
        defense: Defense = instantiate(cfg.defense)
        victim = load_or_train_victim(self.cell)

        start = time.perf_counter()
        evaluation = victim.evaluation()
        eval_s = time.perf_counter() - start
        before, triggered = evaluation.metrics, evaluation.triggered

        start = time.perf_counter()
        model, info = defense.repair(victim.model, victim.defender_context())
        defense_s = time.perf_counter() - start

        start = time.perf_counter()
        target, test, batch = victim.attack.target, victim.data.test, cfg.eval_batch_size
        after = evaluate(model, test, triggered, target, device, batch)
        detection_info = (
            detection(model, test, triggered, device, batch) if isinstance(model, Detector) else {}
        )
        eval_s += time.perf_counter() - start

        meta = victim.entry.meta
        # per-epoch losses and training accuracies; the defense's leave its info so the record keeps them once
        curves = {
            "victim": meta.loss_per_epoch, "victim_acc": meta.acc_per_epoch,
            "defense": info.pop("loss_per_epoch", []), "defense_acc": info.pop("acc_per_epoch", []),
        }  # fmt: skip
        return Record(
            schema_version=SCHEMA_VERSION,
            cell_id=self.cell.id,
            **{g: self.cell.names[g] for g in GROUPS},
            seed=cfg.seed,
            acc_clean_model=self.clean_acc(victim),
            acc_before=before["acc"],
            asr_before=before["asr"],
            ra_before=before["ra"],
            acc=after["acc"],
            asr=after["asr"],
            ra=after["ra"],
            der=der(before["acc"], before["asr"], after["acc"], after["asr"]),
            attack_train_s=meta.train_s,
            aux_train_s=meta.aux_train_s,
            defense_s=round(defense_s, 3),
            eval_s=round(eval_s, 3),
            cache_hit=victim.cache_hit,
            device=str(device),
            compute={**compute_info(), "victim": meta.compute},
            git_sha=git_sha(),
            started_at=started_at,
            finished_at=now(),
            config=container(cfg),
            attack_info=meta.attack_info,
            defense_info=info,
            detection_info=detection_info,
            curves={name: curve for name, curve in curves.items() if curve},
            victim_checkpoint=str(self.cell.cache.path(self.cell.victim_key)),
            warnings=[  # what the attack flagged about its victim, then the cell's own sanity flags
                *meta.attack_info.get("warnings", []),
                *sanity_warnings(
                    victim.data.num_classes, self.cell.names["defense"], before, after, detection_info
                ),
            ],
        )


def summary_line(record: Record) -> str:
    """The line a finished cell prints: its groups, the victim's and the repaired model's metrics."""

    def fmt(v: float | None) -> str:
        return "  n/a" if v is None else f"{v:6.2f}"

    cell = cell_label({g: getattr(record, g) for g in GROUPS})
    cached = " (cached model)" if record.cache_hit else ""
    flags = "".join(f" | WARNING: {w}" for w in record.warnings)
    return (
        f"{cell} | before: ACC {fmt(record.acc_before)} ASR {fmt(record.asr_before)} | after: ACC "
        f"{fmt(record.acc)} ASR {fmt(record.asr)} RA {fmt(record.ra)} | "
        f"defense {record.defense_s:.1f}s{cached}{flags}"
    )
