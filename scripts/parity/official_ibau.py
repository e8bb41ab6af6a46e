"""I-BAU's official code (YiZeng623/I-BAU: ``defense.py`` run as ``__main__``) on our victim, I/O
redirected.

Redirected, nothing else: ``models.VGG`` builds our victim (it takes images in [0, 1], as the script
feeds them) and ``torch.load`` returns its weights under the script's ``'net'`` key; the three
``TensorDataset``s the script builds, in its order, are our test set (its ACC), our triggered non-target
test images (its ASR) and our defender data (the unlearning set; the script's default is the first half
of the test set); ``CIFAR10`` and ``patching_test`` return placeholders, since what they load is replaced
by those datasets; a tensor it asks for on ``'cuda'`` is made on the CPU. Two shims for today's
libraries, not code changes: ``numpy.int`` (removed in NumPy 1.24) is ``int``, and ``hypergrad`` is the
checkout's own. Its 5 rounds, K = 5, Adam lr 1e-3, inner SGD lr 10, 1% patching, batch 100, the
fixed-point map on the first batch and the commented-out L2 projection are its own. The result is the
last round's printed ACC and ASR; ``ref_s`` includes its test-set evaluations after every round.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.utils.data
from harness import (
    OfficialResult,
    ParityVictim,
    captured,
    first,
    loading,
    official_checkout,
    printed,
    run_script,
)
from omegaconf import DictConfig

from bench.core.images import to_float

NAME = "ibau"
SETTINGS = {"original": []}


def official_config(cfg: DictConfig, victim: ParityVictim) -> Namespace:
    d = cfg.defense
    return Namespace(rounds=d.rounds, K=d.K, lr=d.lr, batch_size=d.batch_size, seed=victim.defender.seed)


class Placeholder:
    """What ``CIFAR10(...)`` returns to the script: one image, replaced later by our datasets."""

    data = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    targets = [0]


@contextlib.contextmanager
def redirected(victim: ParityVictim) -> Iterator[None]:
    import models
    import poi_util
    import torchvision.datasets

    t = victim.triggered
    ours = [  # the script's TensorDatasets, in the order it builds them
        (to_float(victim.test.x), victim.test.y.float()),
        (to_float(t.x), torch.full((len(t.x),), float(victim.target))),
        (to_float(victim.defender.data.x), victim.defender.data.y.float()),
    ]
    tensor_dataset, zeros_like = torch.utils.data.TensorDataset, torch.zeros_like
    calls = iter(ours)

    def our_dataset(*tensors: torch.Tensor) -> torch.utils.data.TensorDataset:
        return tensor_dataset(*next(calls))

    def on_cpu(*args, device=None, **kwargs):  # noqa: ANN002, ANN003, ANN202
        return zeros_like(*args, device="cpu" if device == "cuda" else device, **kwargs)

    saved = (torchvision.datasets.CIFAR10, poi_util.patching_test, models.VGG, getattr(np, "int", None))
    torchvision.datasets.CIFAR10 = lambda *a, **k: Placeholder()
    poi_util.patching_test = lambda x, y, *a, **k: (x, y)
    models.VGG = lambda name: victim.fresh_model()
    torch.utils.data.TensorDataset, torch.zeros_like = our_dataset, on_cpu
    np.int = int  # type: ignore[attr-defined]
    try:
        yield
    finally:
        torch.utils.data.TensorDataset, torch.zeros_like = tensor_dataset, zeros_like
        torchvision.datasets.CIFAR10, poi_util.patching_test, models.VGG = saved[:3]
        if saved[3] is None:
            del np.int  # type: ignore[attr-defined]


def run_official(checkout: Path, victim: ParityVictim, args: Namespace) -> OfficialResult:
    with tempfile.TemporaryDirectory() as out, official_checkout(checkout), redirected(victim):
        torch.manual_seed(args.seed)
        argv = ["--poi_path", "victim", "--log_path", out, "--device", "cpu"]
        argv += ["--batch_size", str(args.batch_size), "--lr", str(args.lr)]
        argv += ["--n_rounds", str(args.rounds), "--K", str(args.K)]
        try:
            with loading({"net": victim.fresh_model().state_dict()}):
                _, log, seconds = captured(lambda: run_script(checkout / "defense.py", argv))
        finally:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    acc, asr = printed(log, r"^ACC: ([\d.]+)$", 100), printed(log, r"^ASR: ([\d.]+)$", 100)
    if not acc or not asr:
        raise RuntimeError(f"the official I-BAU printed no round result; its output ends:\n{log[-2000:]}")
    return OfficialResult(
        acc=acc[-1],
        asr=asr[-1],
        seconds=seconds,
        victim_acc=first(printed(log, r"^Original ACC: ([\d.]+)$", 100)),
        victim_asr=first(printed(log, r"^Original ASR: ([\d.]+)$", 100)),
        log=log,
    )
