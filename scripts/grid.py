"""Run a grid on a machine without a scheduler: one single-thread sweep per core over the same cells.

    python scripts/grid.py EXPERIMENT [OVERRIDE...] [--processes N] [--name NAME]
    python scripts/grid.py cpu_cifar_table1                         # the experiment's own sweep
    python scripts/grid.py cpu_cifar_table1 attack=badnets,blend seed=1
    python scripts/grid.py cpu_cifar attack='glob(*)' defense=none

A grid is an experiment file (``conf/experiment/``; its ``hydra.sweeper.params`` name the cells) plus this
runner. Each process sweeps every cell of the grid (``python -m bench -m experiment=EXPERIMENT ...`` with
OMP_NUM_THREADS=1), the attacks rotated so each starts from another one (two processes: one forward, one in
reverse). A cell another process holds or has recorded is skipped, so they share the work until they meet;
on a 2-core machine two single-thread processes train 1.34x more images per second than one two-thread
process, and every cell's wall-clock is a one-core figure. Resumable: victims come from the model cache and
recorded cells are skipped. The attacks are an ``attack=`` override's, else the experiment's sweep
(``glob(...)`` expanded over ``conf/attack``); every other override goes to each sweep as given. Hydra's
logs: ``multirun/NAME/<time>-<i>/``. Exit status: 1 when a sweep failed (each names its failed cells).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob

from bench.catalogue import options
from bench.config import compose_config


def attack_list(experiment: str, overrides: list[str]) -> list[str]:
    """The grid's attacks, in order: the ``attack=`` override's, else the experiment's sweep parameter."""
    given = [o.split("=", 1)[1] for o in overrides if o.startswith("attack=")]
    if given:
        value = given[-1]
    else:
        cfg = compose_config([f"experiment={experiment}"], return_hydra_config=True)
        value = (cfg.hydra.sweeper.get("params") or {}).get("attack")
        if value is None:
            sys.exit(f"error: experiment={experiment} sweeps no attacks; name them: attack=a,b or 'glob(*)'")
    parsed = OverridesParser.create().parse_override(f"attack={value}").value()
    if isinstance(parsed, Glob):
        return parsed.filter(options("attack"))
    return [str(v) for v in getattr(parsed, "list", [parsed])]


def sweep_commands(experiment: str, overrides: list[str], processes: int, name: str) -> list[list[str]]:
    """One ``python -m bench -m`` command per process, each over every attack, starting at another one."""
    attacks = attack_list(experiment, overrides)
    rest = [o for o in overrides if not o.startswith("attack=")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    orders = []
    for i in range(processes):  # forward, reverse, then starts spread over the list
        start = i * len(attacks) // processes
        orders.append(attacks[::-1] if i == 1 else attacks[start:] + attacks[:start])
    return [
        [sys.executable, "-m", "bench", "-m", f"experiment={experiment}", f"attack={','.join(order)}", *rest,
         f"hydra.sweep.dir=multirun/{name}/{stamp}-{i}"]
        for i, order in enumerate(orders)
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", help="an experiment of conf/experiment (the grid)")
    p.add_argument(
        "overrides", nargs="*", help="Hydra overrides for every cell (attack=... picks the attacks)"
    )
    p.add_argument(
        "--processes", type=int, default=2, help="single-thread sweeps side by side (one per core)"
    )
    p.add_argument("--name", help="the sweeps' log folder under multirun/ (default: the experiment)")
    args = p.parse_args(argv)
    if args.experiment not in options("experiment"):
        sys.exit(
            f"error: no experiment {args.experiment!r}; choose one of {', '.join(options('experiment'))}"
        )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    commands = sweep_commands(args.experiment, args.overrides, args.processes, args.name or args.experiment)
    running = [subprocess.Popen(command, env=env) for command in commands]
    sys.exit(1 if any(proc.wait() for proc in running) else 0)


if __name__ == "__main__":
    main()
