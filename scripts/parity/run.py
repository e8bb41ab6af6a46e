"""Parity of a defense with its official code: both on the same cached victim, one CSV row per setting.

    python scripts/parity/run.py --defense unit --official /path/to/UNIT --attack badnets
    python scripts/parity/run.py --defense unit --official /path/to/UNIT --attack blend -- defense.eps=0.03

The victim is the cell ``experiment=<experiment> attack=<attack> seed=<seed>`` (from the model cache,
trained on a miss). The official code runs once per victim, ours once per setting the adapter names
(``official_<defense>.py``); each side's result is kept under ``<out dir>/official/`` (with everything the
official code printed) and ``<out dir>/ours/``, reused unless ``--rerun``, and a row is written once both
sides of it exist. ``--side official`` and ``--side ours`` split the work over two processes, e.g. one
single-thread process per core (OMP_NUM_THREADS=1): every time is then a one-core figure taken beside the
other side, never beside anything else.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from harness import Row, git_commit, load_victim, run_ours, write_row  # noqa: E402

from bench.config import compose_config  # noqa: E402
from bench.run.cell import Cell  # noqa: E402
from bench.run.host import compute_info  # noqa: E402


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--defense", required=True, help="an adapter scripts/parity/official_<defense>.py")
    p.add_argument("--official", type=Path, help="the official code's checkout (for --side official/both)")
    p.add_argument("--attack", required=True)
    p.add_argument("--seed", type=int, default=0, help="the victim's (the cell's) seed")
    p.add_argument(
        "--defense-seed", type=int, help="both defenses' own seed on that victim (default: --seed)"
    )
    p.add_argument("--experiment", default="cpu_cifar")
    p.add_argument("--out", type=Path, default=REPO / "results" / "parity" / "parity.csv")
    p.add_argument(
        "--side",
        choices=("both", "official", "ours"),
        default="both",
        help="run one side only (two processes, one per core); rows are written once both exist",
    )
    p.add_argument("--settings", nargs="*", help="only these of the adapter's settings (default: all)")
    p.add_argument("--rerun", action="store_true", help="run a side again even if its result is stored")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for both the victim and our defense")
    return p.parse_args(argv)


def stored(args: argparse.Namespace, side: str, setting: str | None = None) -> Path:
    """Where one side's result (and the official code's printed output) is kept, beside the CSV."""
    name = f"{args.defense}__{args.attack}__s{args.seed}"
    if args.defense_seed is not None and args.defense_seed != args.seed:
        name += f"__d{args.defense_seed}"
    name += f"__{setting}" if setting else ""
    return args.out.parent / side / f"{name.replace('=', '-')}.json"


def keep(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.side != "ours" and (args.official is None or not args.official.is_dir()):
        sys.exit(f"error: --official {args.official} is not a directory (a checkout of the official code)")
    adapter = importlib.import_module(f"official_{args.defense}")
    unknown = [s for s in args.settings or [] if s not in adapter.SETTINGS]
    if unknown:  # e.g. an override after --settings without "--" before it
        sys.exit(f"error: no setting {', '.join(unknown)} of {args.defense}; its settings: "
                 f"{', '.join(adapter.SETTINGS)} (Hydra overrides go after --)")  # fmt: skip
    settings = [s for s in adapter.SETTINGS if not args.settings or s in args.settings]
    base = [f"experiment={args.experiment}", f"attack={args.attack}", f"defense={args.defense}",
            f"seed={args.seed}", "logger=none", "progress=false", *args.overrides]  # fmt: skip
    ref_path = stored(args, "official")
    run_ref = args.side != "ours" and (args.rerun or not ref_path.is_file())
    due = [] if args.side == "official" else [
        s for s in settings if args.rerun or not stored(args, "ours", s).is_file()
    ]  # fmt: skip
    if run_ref or due:  # only for work still to do: with both sides stored, only the rows are written
        cell = Cell.compose(base)
        victim = load_victim(cell, args.defense_seed)
        print(
            f"victim {args.attack} seed {args.seed}: ACC {victim.acc:.2f}, ASR {victim.asr:.2f}", flush=True
        )
        cpu, threads = compute_info().get("cpu", ""), torch.get_num_threads()
    if run_ref:
        ref = adapter.run_official(args.official, victim, adapter.official_config(cell.cfg, victim))
        ref_record = {**asdict(ref), "commit": git_commit(args.official), "cpu": cpu, "threads": threads}
        keep(ref_path, ref_record)
        print(f"official: ACC {ref.acc:.2f}, ASR {ref.asr:.2f}, {ref.seconds:.1f} s", flush=True)
    for setting in due:
        acc, asr, seconds, info = run_ours(compose_config(base + adapter.SETTINGS[setting]).defense, victim)
        keep(stored(args, "ours", setting), {"acc": acc, "asr": asr, "seconds": seconds, "info": info,
             "victim_acc": victim.acc, "victim_asr": victim.asr, "cpu": cpu, "threads": threads})  # fmt: skip
        print(f"ours {setting}: ACC {acc:.2f}, ASR {asr:.2f}, {seconds:.1f} s", flush=True)
    write_rows(args, settings)


def write_rows(args: argparse.Namespace, settings: list[str]) -> None:
    """One CSV row per setting whose two sides are both stored."""
    ref_path = stored(args, "official")
    if not ref_path.is_file():
        return
    ref = json.loads(ref_path.read_text())
    for setting in settings:
        path = stored(args, "ours", setting)
        if not path.is_file():
            continue
        ours = json.loads(path.read_text())
        row = Row(
            defense=args.defense, attack=args.attack, seed=args.seed, defense_seed=args.defense_seed,
            ours_acc=ours["acc"],
            ours_asr=ours["asr"], ref_acc=ref["acc"], ref_asr=ref["asr"], ours_s=round(ours["seconds"], 1),
            ref_s=round(ref["seconds"], 1), ref_commit=ref["commit"], setting=setting,
            victim_acc=ours["victim_acc"], victim_asr=ours["victim_asr"], ref_victim_acc=ref["victim_acc"],
            ref_victim_asr=ref["victim_asr"], threads=ours["threads"], cpu=ours["cpu"],
        )  # fmt: skip
        write_row(args.out, row)
        print(f"row {setting}: ours {row.ours_acc:.2f}/{row.ours_asr:.2f}, official {row.ref_acc:.2f}/"
              f"{row.ref_asr:.2f} (ACC/ASR)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
