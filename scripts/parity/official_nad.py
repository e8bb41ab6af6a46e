"""NAD's official code (bboylyg/NAD: ``main.py`` run as ``__main__``, twice) on our victim, I/O redirected.

The repository ships no teacher script; its README makes the teacher by running ``main.py`` with every
beta at 0 (plain fine-tuning of the backdoored model on the clean 5%), 5-10 epochs: here its first run,
with our config's teacher epochs. The second run distils the victim against that teacher with its betas.
Redirected, nothing else: ``select_model`` returns our victim (or the teacher) behind a module that
returns, as the script's WRN does, the outputs of the last three stages and the logits (the stage ends
our NAD uses); ``DatasetCL`` (its random 5% of the training set) serves our defender data and
``DatasetBD`` our test set (clean) or our triggered non-target test images (bad), each through the
script's own transforms (crop, flip, Cutout(1, 3)); ``CIFAR10`` returns a placeholder; checkpoints and its
CSV log go to a temporary folder; the device is the CPU (``--cuda 0 --device cpu``); its top-k helper
calls ``view`` where today's PyTorch needs ``reshape`` (a shim with the same numbers). Its SGD (lr 0.1 then
0.01 after 2 epochs, Nesterov, wd 1e-4, batch 64), AT loss and betas are its own. The result is its last
epoch's printed clean and bad Prec@1; ``ref_s`` includes its test-set evaluations every epoch.
"""

from __future__ import annotations

import contextlib
import tempfile
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn as nn
from harness import (
    OfficialResult,
    ParityVictim,
    PILImages,
    captured,
    first,
    official_checkout,
    printed,
    run_script,
)
from omegaconf import DictConfig

from bench.core.images import ImageSet
from bench.core.network import capture, stage_ends

NAME = "nad"
# Ours in the official configuration: its betas on our maps as given; then our default, the betas scaled
# to weigh as on the original's WRN-16-1 maps (conf/defense/nad.yaml).
SETTINGS = {"betas unscaled": ["defense.betas_at_hw=null"], "betas scaled": []}


def official_config(cfg: DictConfig, victim: ParityVictim) -> Namespace:
    d = cfg.defense
    return Namespace(
        betas=list(d.betas), epochs=d.recipe.epochs, teacher_epochs=d.teacher_recipe.epochs, p=d.p,
        lr=d.recipe.lr, batch_size=d.recipe.batch_size, seed=victim.defender.seed,
    )  # fmt: skip


class WithStageEnds(nn.Module):
    """Our model with the interface of the script's WRN: (stage end 1, 2, 3, logits)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.layers = stage_ends(model, (3, 32, 32), 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with capture(self.model, self.layers) as maps:
            logits = self.model(x)
        return (*(maps[n] for n in self.layers), logits)


@contextlib.contextmanager
def redirected(victim: ParityVictim, teacher: nn.Module, made: list[WithStageEnds]) -> Iterator[None]:
    import data_loader
    import models.selector
    import torchvision.datasets
    import utils.util

    def accuracy(output, target, topk=(1,)):  # noqa: ANN001, ANN202
        """The script's top-k helper with ``reshape`` where it calls ``view`` on a non-contiguous slice,
        which PyTorch >= 1.7 refuses (a shim for today's library; same numbers)."""
        _, pred = output.topk(max(topk), 1, True, True)
        correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
        return [correct[:k].reshape(-1).float().sum(0).mul_(100.0 / target.size(0)) for k in topk]

    t = victim.triggered
    bad = ImageSet(t.x, torch.full_like(t.y, victim.target))

    def select_model(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 (the script's signature)
        made.append(
            WithStageEnds(teacher if not made else victim.fresh_model())
        )  # teacher first, then student
        return made[-1]

    saved = (torchvision.datasets.CIFAR10, data_loader.DatasetCL, data_loader.DatasetBD)
    saved += (models.selector.select_model, utils.util.accuracy)
    torchvision.datasets.CIFAR10 = lambda *a, **k: None
    data_loader.DatasetCL = lambda opt, full_dataset=None, transform=None: PILImages(
        victim.defender.data, transform
    )
    data_loader.DatasetBD = lambda opt, full_dataset, inject_portion, transform=None, **k: PILImages(
        bad if inject_portion else victim.test, transform
    )
    models.selector.select_model, utils.util.accuracy = select_model, accuracy
    try:
        yield
    finally:
        (torchvision.datasets.CIFAR10, data_loader.DatasetCL, data_loader.DatasetBD,
         models.selector.select_model, utils.util.accuracy) = saved  # fmt: skip


def run_main(
    checkout: Path, victim: ParityVictim, teacher: nn.Module, argv: list[str]
) -> tuple[nn.Module, str, float]:
    """One run of ``main.py``; the trained student, what it printed, its wall-clock."""
    made: list[WithStageEnds] = []
    with tempfile.TemporaryDirectory() as out, official_checkout(checkout), redirected(victim, teacher, made):
        argv = [*argv, "--checkpoint_root", out, "--log_root", out]
        _, log, seconds = captured(lambda: run_script(checkout / "main.py", argv))
    return made[1].model, log, seconds


def run_official(checkout: Path, victim: ParityVictim, args: Namespace) -> OfficialResult:
    torch.manual_seed(args.seed)
    common = ["--cuda", "0", "--device", "cpu", "--batch_size", str(args.batch_size), "--lr", str(args.lr),
              "--p", str(args.p)]  # fmt: skip
    zero = ["--beta1", "0", "--beta2", "0", "--beta3", "0"]
    teacher, teacher_log, teacher_s = run_main(
        checkout, victim, victim.fresh_model(), [*common, *zero, "--epochs", str(args.teacher_epochs)]
    )
    betas = [str(int(b)) if float(b).is_integer() else str(b) for b in args.betas]
    _, log, seconds = run_main(checkout, victim, teacher.eval(), [
        *common, "--beta1", betas[0], "--beta2", betas[1], "--beta3", betas[2], "--epochs", str(args.epochs),
    ])  # fmt: skip
    clean, bad = printed(log, r"^\[clean\]Prec@1: ([\d.]+)$"), printed(log, r"^\[bad\]Prec@1: ([\d.]+)$")
    if not clean or not bad:
        raise RuntimeError(f"the official NAD printed no result; its output ends:\n{log[-2000:]}")
    return OfficialResult(  # the teacher run tests its student, the untouched victim, before its first epoch
        acc=clean[-1], asr=bad[-1], seconds=teacher_s + seconds,
        victim_acc=first(printed(teacher_log, r"^\[clean\]Prec@1: ([\d.]+)$")),
        victim_asr=first(printed(teacher_log, r"^\[bad\]Prec@1: ([\d.]+)$")), log=teacher_log + log,
    )  # fmt: skip
