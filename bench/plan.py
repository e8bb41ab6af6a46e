"""``dry_run=true``: what a cell (or a sweep) would do, without doing it. Each cell is checked like a real
one (every setting validated) and reports its id, whether its record exists, whether its victim is in
the model cache and where its record goes; a sweep ends with the totals (``SweepReport``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bench.context import CellContext
from bench.identity import cell_id, cell_label, victim_key
from bench.records import record_path

# Written into each job directory of a dry run; the sweep report sums them.
PLAN_MARKER = "plan.json"


def plan_cell(cfg: DictConfig, names: dict[str, str]) -> dict[str, Any]:
    """What running this cell would do: its id, record, and whether it would train its victim."""
    ctx = CellContext.of(cfg)
    cid = cell_id(names, ctx.sem)
    record = record_path(cfg.results_dir, cid)
    victim = victim_key(ctx.sem, ctx.sem["attack"])
    return {
        "cell": cell_label(names),
        "cell_id": cid,
        "record": str(record),
        "recorded": record.exists(),
        "victim": victim,
        "victim_cached": ctx.cache.path(victim).exists(),
    }


def plan_line(plan: dict[str, Any]) -> str:
    if plan["recorded"]:
        action = "skip (recorded)"
    else:
        action = "run, reusing the cached victim" if plan["victim_cached"] else "run, training its victim"
    return f"dry run: {plan['cell']}: {action} -> {plan['record']}"


def sweep_summary(sweep_dir: Path) -> list[str]:
    """The totals of a dry-run sweep, from the plans its jobs left; empty when it was not a dry run."""
    plans = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob(f"*/{PLAN_MARKER}"))]
    if not plans:
        return []
    to_run = [p for p in plans if not p["recorded"]]
    to_train = {p["victim"] for p in to_run if not p["victim_cached"]}
    folders = sorted({str(Path(p["record"]).parent) for p in plans})
    return [
        f"dry run: {len(plans)} cells, {len(plans) - len(to_run)} already recorded, {len(to_run)} to run, "
        f"{len(to_train)} distinct victims to train; records go to {', '.join(folders)}"
    ]
