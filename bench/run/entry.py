"""The Hydra entry point: ``python -m bench attack=... defense=...`` (``-m`` sweeps)."""

from __future__ import annotations

import json
import logging
import platform
import signal
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import bench.config  # noqa: F401 (registers the budget resolvers the configs use)
from bench.catalogue import CONF_DIR
from bench.core.errors import SettingError, config_error
from bench.run.cell import Cell
from bench.run.host import compute_info, git_sha
from bench.run.identity import GROUPS, cell_label
from bench.run.plan import PLAN_MARKER, plan_cell, plan_line, sweep_summary
from bench.run.runner import Preempted, now, run_cell, stop_on_sigterm, summary_line

log = logging.getLogger("bench")


def write_environment(run_dir: Path) -> None:
    """Beside Hydra's .hydra/config.yaml: what this run ran on."""
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "platform": platform.platform(),
        **compute_info(),
        "git_sha": git_sha(),
        "argv": sys.argv,
    }
    (run_dir / "environment.json").write_text(json.dumps(env, indent=2) + "\n")


# Written into a failed job's Hydra output directory; SweepReport collects them at the end of a sweep.
FAILURE_MARKER = "failure.json"
# Written into every other job's directory: what the job did ("ran", "skipped", "held"), for the summary.
OUTCOME_MARKER = "outcome.json"


def record_failure(names: dict[str, str], cell: Cell | None, message: str, job_dir: Path) -> None:
    """Keep a failed cell's error in its job directory, so the sweep can name it, and, when the ``cell``
    is given (its settings passed the checks), beside its record's place (``<cell_id>.failed``); a
    rerun retries it (a failure is never a record)."""
    failure = {"cell": cell_label(names), "error": message, "git_sha": git_sha(), "argv": sys.argv}
    where = "none: the settings were refused before the cell started"
    if cell is not None:
        try:
            cell.failure_path.parent.mkdir(parents=True, exist_ok=True)
            kept = {**failure, "cell_id": cell.id, "config": OmegaConf.to_container(cell.cfg)}
            cell.failure_path.write_text(json.dumps(kept, indent=2, default=str) + "\n")
            where = str(cell.failure_path)
        except OSError as exc:  # results_dir unwritable
            where = f"not written: {exc}"
    (job_dir / FAILURE_MARKER).write_text(json.dumps({**failure, "failure_file": where}, indent=2) + "\n")


def outcomes_line(sweep_dir: Path, failed: int, seconds: float) -> str | None:
    """One line of what a sweep's jobs did, from the markers they left (``failed``: the failure markers
    counted): cells run, skipped (recorded), held by another process, failed, and the wall-clock; None for
    a dry run (its own summary says it)."""
    done = [json.loads(p.read_text())["outcome"] for p in sweep_dir.glob(f"*/{OUTCOME_MARKER}")]
    if not done and not failed:
        return None
    h, rest = divmod(round(seconds), 3600)
    return (
        f"sweep: {len(done) + failed} cells: {done.count('ran')} ran, {done.count('skipped')} skipped "
        f"(recorded), {done.count('held')} held by another process, {failed} failed; "
        f"{h}:{rest // 60:02d}:{rest % 60:02d} wall-clock"
    )


class SweepReport(Callback):
    """At the end of a sweep, one line of what its cells did, then name every cell that failed (each left
    FAILURE_MARKER in its job directory) and exit with status 1; the other cells have run."""

    def on_multirun_start(self, config: DictConfig, **kwargs: object) -> None:
        self.started = time.monotonic()

    def on_multirun_end(self, config: DictConfig, **kwargs: object) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        for line in sweep_summary(sweep_dir):
            print(line)
        markers = sorted(sweep_dir.glob(f"*/{FAILURE_MARKER}"))
        seconds = time.monotonic() - getattr(self, "started", time.monotonic())
        if summary := outcomes_line(sweep_dir, len(markers), seconds):
            print(summary)
        if not markers:
            return
        print(
            f"{len(markers)} cell(s) of this sweep failed (rerun the sweep to retry them):", file=sys.stderr
        )
        for marker in markers:
            failure = json.loads(marker.read_text())
            print(f"failed: {failure['cell']}: {failure['error']}", file=sys.stderr)
        sys.exit(1)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)
    for marker in (FAILURE_MARKER, OUTCOME_MARKER):  # of an earlier run of this job directory
        (job_dir / marker).unlink(missing_ok=True)
    started = now()
    write_environment(job_dir)
    names = {g: hc.runtime.choices[g] for g in GROUPS}
    cell = None
    try:
        cell = Cell.of(cfg, names)  # every setting checked; the one value the rest of the run takes
        if cfg.get("dry_run", False):
            plan = plan_cell(cell)
            (job_dir / PLAN_MARKER).write_text(json.dumps(plan, indent=2) + "\n")
            print(plan_line(plan))
            return
        record = run_cell(cell)
    except Preempted:
        print("error: SIGTERM: the cell stopped before its end; no record written, its claim released "
              "(rerun the command to run it)", file=sys.stderr)  # fmt: skip
        sys.exit(128 + signal.SIGTERM)
    except Exception as exc:
        err = config_error(exc)
        message = str(err) if err is not None else f"{type(exc).__name__}: {exc}"
        if err is None:
            log.exception("cell failed")
        refused = isinstance(err, SettingError)  # a setting refused: no failure beside the records
        record_failure(names, None if refused else cell, message, job_dir)
        print(f"error: {message}", file=sys.stderr)
        if hc.mode == RunMode.MULTIRUN:
            return  # the sweep goes on; SweepReport names the failed cells at its end
        if err is None:
            raise
        sys.exit(2)
    # a record that started before this job is one that existed: the cell was skipped
    outcome = "held" if record is None else "skipped" if record.started_at < started else "ran"
    (job_dir / OUTCOME_MARKER).write_text(json.dumps({"cell": cell_label(names), "outcome": outcome}) + "\n")
    if record is not None:  # None: another process holds the cell
        overrides = " ".join(hc.overrides.task) or "none"
        log.info("%s | overrides: %s | record: %s", summary_line(record), overrides, cell.record_path)
