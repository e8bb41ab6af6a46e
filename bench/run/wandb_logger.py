"""Weights & Biases logging of result records: one W&B run per grid cell.

Offline unless the user says otherwise (``logger.mode=online`` or WANDB_MODE); offline runs land in
``<dir>/wandb/offline-run-*`` and can be synced later with ``wandb sync``. Online without a network,
W&B would wait ~90 s per cell before giving up: the server is probed once per process and the runs fall
back to offline with one warning line. W&B's own console lines are kept out unless ``quiet=false``.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from urllib.parse import urlparse

from bench.run.records import IDENTITY_KEYS, SUMMARY_KEYS, Record, RecordLogger

log = logging.getLogger(__name__)


class WandbLogger(RecordLogger):
    def __init__(
        self,
        project: str = "backdoor-bench",
        mode: str = "offline",
        dir: str = ".",
        entity: str | None = None,
        quiet: bool = True,
    ) -> None:
        self.project, self.mode, self.dir, self.entity, self.quiet = project, mode, dir, entity, quiet

    def effective_mode(self) -> str:
        """``mode`` (WANDB_MODE wins), offline instead of online when the W&B server cannot be reached."""
        mode = os.environ.get("WANDB_MODE") or self.mode
        if mode == "online" and not server_reachable(os.environ.get("WANDB_BASE_URL", DEFAULT_SERVER)):
            log.warning("W&B server unreachable: logging this run offline (upload later with `wandb sync`)")
            return "offline"
        return mode

    def log_record(self, record: Record) -> None:
        if self.quiet:
            os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        fields = record.to_dict()
        run = wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.effective_mode(),
            dir=self.dir,
            name=record.cell_id,
            group=f"{record.dataset}/{record.model}",
            tags=[record.attack, record.defense],
            config=record.config,
        )
        for name, curve in (record.curves or {}).items():  # per-epoch curves, each against its own epochs
            stage, metric = (
                (name.removesuffix("_acc"), "train_acc") if name.endswith("_acc") else (name, "loss")
            )
            run.define_metric(f"{stage}/epoch")
            run.define_metric(f"{stage}/{metric}", step_metric=f"{stage}/epoch")
            for epoch, value in enumerate(curve, 1):
                run.log({f"{stage}/epoch": epoch, f"{stage}/{metric}": value})
        summary = {k: fields[k] for k in (*IDENTITY_KEYS, *SUMMARY_KEYS) if fields[k] is not None}
        summary.update({f"defense_info/{k}": v for k, v in record.defense_info.items()})
        run.log(summary)
        run.summary.update(summary)
        run.finish()


DEFAULT_SERVER = "https://api.wandb.ai"


@functools.cache
def server_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the W&B server opens within ``timeout`` (asked once per process)."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or url, port), timeout=timeout).close()
        return True
    except OSError:
        return False
