"""UNIT's official code (Megum1/UNIT, MIT: ``unit.py``'s ``unit(args)``) on our victim, I/O redirected.

Redirected, nothing else: ``torch.load`` returns our victim's network, ``get_norm`` its normalisation,
``get_dataset`` our defender images (training: through the reference's own ``get_transform``, its
crop/flip drawn once at collection, ordered so its per-class first-80% split is ours) and our test set,
``PoisonDataset`` our triggered non-target test images, and ``.cuda()`` stays on the CPU. Its step count,
schedule (the Neural-Cleanse-style recorder), Adam settings, initialisation and acceptance rule are its
own; ``--acc_degrade`` gets the same eps as ours. Its ``data_rate`` is 1.0 because the dataset it is
handed is already the defender's 5%.
"""

from __future__ import annotations

import re
from argparse import Namespace
from pathlib import Path

from harness import (
    OfficialResult,
    ParityVictim,
    PILImages,
    TensorImages,
    captured,
    loading,
    official_checkout,
)
from omegaconf import DictConfig
from torchvision import transforms

NAME = "unit"
# Our side in the official code's configuration (its recorder schedule), then the paper's schedule beside it;
# the first two rows ran when `frozen` was our default (plain validation images), and keep that meaning.
SETTINGS = {
    "schedule=code": ["defense.schedule=code", "defense.augment=frozen"],
    "schedule=paper": ["defense.schedule=paper", "defense.augment=frozen"],
    # the reference also validates on one crop/flip of its validation images (its collection augments all)
    "schedule=code+augment=frozen_all": ["defense.schedule=code", "defense.augment=frozen_all"],
    # the same with each step's forward/backward in bf16 (the bounds fp32): what the speed option changes
    "schedule=code+augment=frozen_all+gradient=bf16": [
        "defense.schedule=code",
        "defense.augment=frozen_all",
        "defense.gradient=bf16",
    ],
}
LINE = re.compile(r"(Initial|After UNIT) --- Accuracy: ([\d.]+)%, ASR: ([\d.]+)%")


def official_args(eps: float, steps: int, lr: float, seed: int, target: int) -> Namespace:
    """The reference's command-line arguments (its defaults, but eps, steps, lr and seed as ours)."""
    return Namespace(
        datadir="unused", phase="unit", dataset="cifar10", network="resnet18", attack="parity",
        seed=seed, batch_size=128, target=target, lr=lr, n_steps=steps, data_rate=1.0, acc_degrade=eps,
    )  # fmt: skip


def official_config(cfg: DictConfig, victim: ParityVictim) -> Namespace:
    """The reference's arguments for our cell: eps, steps and lr as our defense config has them."""
    d = cfg.defense
    return official_args(eps=d.eps, steps=d.steps, lr=d.lr, seed=victim.defender.seed, target=victim.target)


def run_official(checkout: Path, victim: ParityVictim, args: Namespace) -> OfficialResult:
    with official_checkout(checkout):
        import unit as ref  # the checkout's unit.py
        import utils as ref_utils

        normalize = transforms.Normalize(victim.mean, victim.std)

        def get_dataset(a: Namespace, train: bool = True, augment: bool = True) -> object:
            if train:
                return PILImages(
                    victim.defender_in_split_order(), ref_utils.get_transform(a, augment=augment)
                )
            return TensorImages(victim.test.x, victim.test.y)

        ref.get_norm = lambda dataset: (normalize, None)
        ref.get_dataset = get_dataset
        ref.get_backdoor = lambda attack, shape, device=None: None
        ref.PoisonDataset = lambda dataset, backdoor, target: TensorImages(victim.triggered.x, target)
        ref_utils.seed_torch(args.seed)  # as its __main__ does before unit(args)
        with loading(victim.fresh_net()):
            _, log, seconds = captured(lambda: ref.unit(args))
    found = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in LINE.finditer(log)}
    if "After UNIT" not in found:
        raise RuntimeError(f"the official UNIT printed no result; its output ends:\n{log[-2000:]}")
    took = re.search(r"Running time: ([\d.]+)s", log)
    before = found.get("Initial", (None, None))
    return OfficialResult(
        acc=found["After UNIT"][0],
        asr=found["After UNIT"][1],
        seconds=float(took.group(1)) if took else seconds,
        victim_acc=before[0],
        victim_asr=before[1],
        log=log,
    )
