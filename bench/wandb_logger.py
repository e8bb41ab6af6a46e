"""Weights & Biases logging of result records: one W&B run per grid cell.

Offline unless the user says otherwise (``logger.mode=online`` or WANDB_MODE); offline runs land in
``<dir>/wandb/offline-run-*`` and can be synced later with ``wandb sync``.
"""

from __future__ import annotations

from bench.records import Record, RecordLogger, record_fields

# What makes a W&B run readable back as a record (bench.wandb_records): the record's identity, metrics
# and costs, plus where it ran.
IDENTITY_KEYS = tuple(k for k in record_fields("identity") if k != "schema_version")
SUMMARY_KEYS = (*record_fields("metric", "cost"), "cache_hit", "device")


class WandbLogger(RecordLogger):
    def __init__(
        self,
        project: str = "backdoor-bench",
        mode: str = "offline",
        dir: str = ".",
        entity: str | None = None,
    ) -> None:
        self.project, self.mode, self.dir, self.entity = project, mode, dir, entity

    def log_record(self, record: Record) -> None:
        import wandb

        fields = record.to_dict()
        run = wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            dir=self.dir,
            name=record.cell_id,
            group=f"{record.dataset}/{record.model}",
            tags=[record.attack, record.defense],
            config=record.config,
        )
        summary = {k: fields[k] for k in (*IDENTITY_KEYS, *SUMMARY_KEYS) if fields[k] is not None}
        summary.update({f"defense_info/{k}": v for k, v in record.defense_info.items()})
        run.log(summary)
        run.summary.update(summary)
        run.finish()
