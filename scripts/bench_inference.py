"""Inference time of a victim model before and after a defense, over the whole test set.

Composes the same config as ``python -m bench`` from the given overrides, loads (or trains) the cell's
victim from the model cache, repairs it with the configured defense, and times a full pass over the
test set for both models (median of ``--repeats`` alternating passes). Prints JSON.
Usage: python scripts/bench_inference.py experiment=cpu attack=badnets defense=unit [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
from hydra.utils import instantiate

from bench.core.engine import precision
from bench.run.cell import Cell
from bench.run.metrics import predict
from bench.run.victims import load_or_train_victim


def median_seconds(
    models: list[torch.nn.Module], x: torch.Tensor, device: torch.device, batch: int, n: int
) -> list[float]:
    """Median wall-clock of a full pass per model; passes alternate between the models so that drift in
    machine load hits all of them alike."""
    for model in models:
        predict(model, x[:batch], device, batch)  # warm-up
    times: list[list[float]] = [[] for _ in models]
    for _ in range(n):
        for model, t in zip(models, times, strict=True):
            start = time.perf_counter()
            predict(model, x, device, batch)
            t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    cell = Cell.compose([*args.overrides, "progress=false"])
    cfg = cell.cfg
    victim = load_or_train_victim(cell)
    device = victim.cell.device
    x = victim.data.test.x
    with precision(cell.precision):  # as the cell runs the defense and evaluates
        repaired, _ = instantiate(cfg.defense).repair(copy.deepcopy(victim.model), victim.defender_context())
        before, after = median_seconds([victim.model, repaired], x, device, cfg.eval_batch_size, args.repeats)
    print(json.dumps({
        "overrides": args.overrides, "test_images": len(x), "repeats": args.repeats,
        "original_s": round(before, 4), "defended_s": round(after, 4),
        "overhead_percent": round(100 * (after - before) / before, 2),
        "threads": torch.get_num_threads(), "device": str(device),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
