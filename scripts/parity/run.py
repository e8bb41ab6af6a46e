"""Parity of a defense with its official code: both on the same cached victim, one CSV row per setting.

    python scripts/parity/run.py --defense unit --official /path/to/UNIT --attack badnets
    python scripts/parity/run.py --defense unit --official /path/to/UNIT --attack blend -- defense.eps=0.03

The victim is the cell ``experiment=<experiment> attack=<attack> seed=<seed>`` (from the model cache,
trained on a miss). The official code runs once per victim (its printed output is kept in
``<out dir>/official/``, and reused when that file exists unless ``--rerun-official``); ours runs once per
setting the adapter names (``official_<defense>.py``). Everything runs in this process, one after the
other, on all the threads torch is given: time nothing else beside it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

from harness import OfficialResult, Row, git_commit, load_victim, run_ours, write_row  # noqa: E402

from bench.entry import compose_config  # noqa: E402
from bench.host import compute_info  # noqa: E402


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--defense", required=True, help="an adapter scripts/parity/official_<defense>.py")
    p.add_argument("--official", required=True, type=Path, help="the official code's checkout")
    p.add_argument("--attack", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--experiment", default="cpu_cifar")
    p.add_argument("--out", type=Path, default=REPO / "results" / "parity" / "parity.csv")
    p.add_argument("--settings", nargs="*", help="only these of the adapter's settings (default: all)")
    p.add_argument("--rerun-official", action="store_true", help="run the official code even if logged")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for both the victim and our defense")
    return p.parse_args(argv)


def official_result(args: argparse.Namespace, adapter, victim, cfg) -> OfficialResult:  # noqa: ANN001
    log_path = args.out.parent / "official" / f"{args.defense}__{args.attack}__s{args.seed}.json"
    if log_path.is_file() and not args.rerun_official:
        return OfficialResult(**json.loads(log_path.read_text()))
    result = adapter.run_official(args.official, victim, adapter.official_config(cfg, victim))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(json.dumps(asdict(result), indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if not args.official.is_dir():
        sys.exit(f"error: --official {args.official} is not a directory (a checkout of the official code)")
    adapter = importlib.import_module(f"official_{args.defense}")
    base = [f"experiment={args.experiment}", f"attack={args.attack}", f"defense={args.defense}",
            f"seed={args.seed}", "logger=none", "progress=false", *args.overrides]  # fmt: skip
    cfg = compose_config(base)
    victim = load_victim(cfg)
    print(f"victim {args.attack} seed {args.seed}: ACC {victim.acc:.2f}, ASR {victim.asr:.2f}", flush=True)
    ref = official_result(args, adapter, victim, cfg)
    commit = git_commit(args.official)
    print(f"official ({commit[:12]}): ACC {ref.acc:.2f}, ASR {ref.asr:.2f}, {ref.seconds:.1f} s", flush=True)
    for setting, extra in adapter.SETTINGS.items():
        if args.settings and setting not in args.settings:
            continue
        ours_cfg = compose_config(base + extra)
        acc, asr, seconds, info = run_ours(ours_cfg.defense, victim)
        row = Row(
            defense=args.defense, attack=args.attack, seed=args.seed, ours_acc=acc, ours_asr=asr,
            ref_acc=ref.acc, ref_asr=ref.asr, ours_s=round(seconds, 1), ref_s=round(ref.seconds, 1),
            ref_commit=commit, setting=setting, victim_acc=victim.acc, victim_asr=victim.asr,
            ref_victim_acc=ref.victim_acc, ref_victim_asr=ref.victim_asr, cpu=compute_info().get("cpu", ""),
        )  # fmt: skip
        write_row(args.out, row)
        print(
            f"ours {setting}: ACC {acc:.2f}, ASR {asr:.2f}, {seconds:.1f} s; {json.dumps(info)}", flush=True
        )


if __name__ == "__main__":
    main()
