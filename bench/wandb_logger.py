"""Weights & Biases logging of result records: one W&B run per grid cell.

Offline unless the user says otherwise (``logger.mode=online`` or WANDB_MODE); offline runs land in
``<dir>/wandb/offline-run-*`` and can be synced later with ``wandb sync``.
"""

from __future__ import annotations

from typing import Any

# What makes a W&B run readable back as a record (bench.wandb_records).
IDENTITY_KEYS = ("cell_id", "dataset", "model", "attack", "defense", "seed")
SUMMARY_KEYS = (
    "acc_clean_model", "acc_before", "asr_before", "ra_before", "acc", "asr", "ra", "der",
    "attack_train_s", "aux_train_s", "defense_s", "eval_s", "cache_hit", "device",
)  # fmt: skip


class WandbLogger:
    def __init__(
        self,
        project: str = "backdoor-bench",
        mode: str = "offline",
        dir: str = ".",
        entity: str | None = None,
    ) -> None:
        self.project, self.mode, self.dir, self.entity = project, mode, dir, entity

    def log_record(self, record: dict[str, Any]) -> None:
        import wandb

        run = wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            dir=self.dir,
            name=record["cell_id"],
            group=f"{record['dataset']}/{record['model']}",
            tags=[record["attack"], record["defense"]],
            config=record["config"],
        )
        summary = {k: record[k] for k in (*IDENTITY_KEYS, *SUMMARY_KEYS) if record[k] is not None}
        summary.update({f"defense_info/{k}": v for k, v in record["defense_info"].items()})
        run.log(summary)
        run.summary.update(summary)
        run.finish()
