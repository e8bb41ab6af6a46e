"""``dry_run=true``: what a cell (or a sweep) would do, without doing it. Each cell is checked like a real
one (every setting validated) and reports its id, whether its record exists, whether its victim is in
the model cache, where its record goes and how long it should take (from the records this machine left in
the same results folder); a sweep ends with the totals (``SweepReport``)."""

from __future__ import annotations

import functools
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.run.cell import Cell
from bench.run.host import compute_info
from bench.run.identity import GROUPS, MODEL_KEYS, semantic_config
from bench.run.records import read_records

# Written into each job directory of a dry run; the sweep report sums them.
PLAN_MARKER = "plan.json"


def same_recipe(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two semantic configs whose victims train alike (data, architecture, recipe, precision; any seed)."""
    return all(a.get(k) == b.get(k) for k in MODEL_KEYS if k != "seed")


def same_machine(recorded: dict[str, Any], here: dict[str, Any]) -> bool:
    """Same processor name and thread count, and the same vector instructions and bf16 support where the
    record names them (records before those keys match on name and threads alone)."""
    return all(recorded.get(k) == here[k] for k in ("cpu", "threads")) and all(
        recorded.get(k) in (None, here[k]) for k in ("isa", "cpu_bf16")
    )


def estimate_seconds(
    sem: dict[str, Any], names: dict[str, str], train_victim: bool, records: Sequence[dict]
) -> float | None:
    """This cell's wall-clock from records of this machine (same processor and thread count) in its results
    folder: the median defense and evaluation time of records of the same defense config on the same
    recipe, plus, when its victim must be trained, the median training time of the same attack's victims
    on that recipe; None when a part has no such record."""
    here = compute_info()
    mine = [
        (r, semantic_config(r["config"], {g: r[g] for g in GROUPS}))
        for r in records
        if isinstance(r.get("config"), dict) and same_machine(r.get("compute") or {}, here)
    ]
    alike = [(r, s) for r, s in mine if same_recipe(s, sem)]
    defense = [(r.get("defense_s") or 0.0) + (r.get("eval_s") or 0.0) for r, s in alike
               if (r.get("defense"), s.get("defense")) == (names["defense"], sem.get("defense"))]  # fmt: skip
    if not defense:
        return None
    total = statistics.median(defense)
    if train_victim:
        victims = [(r.get("attack_train_s") or 0.0) + (r.get("aux_train_s") or 0.0) for r, s in alike
                   if (r.get("attack"), s.get("attack")) == (names["attack"], sem.get("attack"))]  # fmt: skip
        if not victims:
            return None
        total += statistics.median(victims)
    return total


@functools.lru_cache(maxsize=4)
def records_of(results_dir: str) -> tuple[dict, ...]:
    """A results folder's records, read once per dry run: every cell of a dry-run sweep (one process)
    asks for the same folder, and a dry run writes none."""
    return tuple(read_records(results_dir))


def plan_cell(cell: Cell) -> dict[str, Any]:
    """What running this cell would do: its id, record, whether it trains its victim, and for how long."""
    record = cell.record_path
    cached, recorded = cell.cache.path(cell.victim_key).exists(), record.exists()
    records = records_of(cell.cfg.results_dir)
    estimate = None if recorded else estimate_seconds(cell.sem, cell.names, not cached, records)
    return {
        "cell": cell.label,
        "cell_id": cell.id,
        "record": str(record),
        "recorded": recorded,
        "victim": cell.victim_key,
        "victim_cached": cached,
        "estimate_s": estimate,
    }


def duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{max(minutes, 1)} min"


def plan_line(plan: dict[str, Any]) -> str:
    if plan["recorded"]:
        action = "skip (recorded)"
    else:
        action = "run, reusing the cached victim" if plan["victim_cached"] else "run, training its victim"
        estimate = plan.get("estimate_s")
        action += (
            f", about {duration(estimate)}"
            if estimate is not None
            else ", no estimate (no record of its setting on this machine here)"
        )
    return f"dry run: {plan['cell']}: {action} -> {plan['record']}"


def sweep_summary(sweep_dir: Path) -> list[str]:
    """The totals of a dry-run sweep, from the plans its jobs left; empty when it was not a dry run."""
    plans = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob(f"*/{PLAN_MARKER}"))]
    if not plans:
        return []
    to_run = [p for p in plans if not p["recorded"]]
    to_train = {p["victim"] for p in to_run if not p["victim_cached"]}
    folders = sorted({str(Path(p["record"]).parent) for p in plans})
    known = [p["estimate_s"] for p in to_run if p.get("estimate_s") is not None]
    time = f"about {duration(sum(known))} of one process" if known else "no estimate"
    if known and len(known) < len(to_run):
        time += f" for {len(known)} of them ({len(to_run) - len(known)} without an estimate)"
    return [
        f"dry run: {len(plans)} cells, {len(plans) - len(to_run)} already recorded, {len(to_run)} to run, "
        f"{len(to_train)} distinct victims to train; {time}; records go to {', '.join(folders)}"
    ]
