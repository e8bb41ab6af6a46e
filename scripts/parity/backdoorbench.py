"""BackdoorBench's defense scripts (SCLBD/BackdoorBench: ``defense/<name>.py`` run as ``__main__``) on our
victim, I/O redirected: what the FT and FP adapters share.

Redirected, nothing else: ``load_attack_result`` (which reads an ``attack_result.pt`` the framework's
attack scripts write) returns our victim's network weights, our defender data as its clean training
set (picked whole by an ``--index`` file listing every image), our test set as its clean test set and our
triggered non-target test images, labelled with the target, as its backdoor test set, each in the
framework's own dataset classes and transforms; ``generate_cls_model`` builds our victim's network
(the one behind its normalisation) and ``get_dataset_normalization`` is the victim's mean and std; the
script writes its records and logs under a temporary working folder; the device is the CPU, with its
DataLoader workers 0 and pin_memory off (both CUDA-side settings), and ``amp`` off (CUDA autocast, a no-op
on the CPU); one shim for today's NumPy (``numpy.infty``, removed in 2.0, is ``numpy.inf``). The result is
the official code's own test helper (``given_dataloader_test``) on the model it repaired, which is also how
the victim is read before the run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from argparse import Namespace
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import yaml
from harness import OfficialResult, ParityVictim, PILImages, captured, official_checkout, run_script
from omegaconf import DictConfig

from bench.core.images import ImageSet


def official_config(cfg: DictConfig, victim: ParityVictim) -> Namespace:
    """Our recipe's length and optimiser, passed to the official script (its yaml has the same SGD
    settings; the length is the budget's, and its cosine ``T_max``, hard-coded to 100 epochs unless the yaml
    sets ``cos_t_max``, is set to that length so both anneal to zero over the same epochs)."""
    r = cfg.defense.recipe
    return Namespace(epochs=r.epochs, batch_size=r.batch_size, lr=r.lr, momentum=r.momentum,
                     wd=r.weight_decay, seed=victim.defender.seed)  # fmt: skip


@contextlib.contextmanager
def redirected(victim: ParityVictim, made: list[nn.Module]) -> Iterator[None]:
    import torchvision.transforms as T
    import utils.aggregate_block.dataset_and_transform_generate as transforms_block
    import utils.aggregate_block.model_trainer_generate as model_block
    import utils.save_load_attack as save_load
    from utils.bd_dataset_v2 import dataset_wrapper_with_transform, prepro_cls_DatasetBD_v2

    t = victim.triggered
    bad = ImageSet(t.x, torch.full_like(t.y, victim.target))

    def test_set(data: ImageSet, test_transform: Any) -> Any:
        return dataset_wrapper_with_transform(prepro_cls_DatasetBD_v2(PILImages(data)), test_transform)

    def load_attack_result(path: str) -> dict[str, Any]:
        train_transform, test_transform = (transforms_block.get_transform("cifar10", 32, 32, train=train)
                                           for train in (True, False))  # fmt: skip
        return {
            "model_name": "victim",
            "model": victim.fresh_net().state_dict(),
            "clean_train": dataset_wrapper_with_transform(PILImages(victim.defender.data), train_transform),
            "clean_test": test_set(victim.test, test_transform),
            "bd_train": None,
            "bd_test": test_set(bad, test_transform),
        }

    def generate_cls_model(*args: Any, **kwargs: Any) -> nn.Module:
        made.append(victim.fresh_net())
        return made[-1]

    saved = (save_load.load_attack_result, model_block.generate_cls_model)
    normalization = transforms_block.get_dataset_normalization
    shimmed = not hasattr(np, "infty")
    np.infty = np.inf  # type: ignore[attr-defined]  # its plot helper's name, removed in NumPy 2.0
    save_load.load_attack_result = load_attack_result
    model_block.generate_cls_model = generate_cls_model
    transforms_block.get_dataset_normalization = lambda name: T.Normalize(victim.mean, victim.std)
    try:
        yield
    finally:
        save_load.load_attack_result, model_block.generate_cls_model = saved
        transforms_block.get_dataset_normalization = normalization
        if shimmed:
            del np.infty  # type: ignore[attr-defined]


def official_reading(net: nn.Module, victim: ParityVictim) -> tuple[float, float]:
    """ACC and ASR of ``net`` by the framework's own test helper on its own test loaders."""
    import utils.save_load_attack as save_load  # its load_attack_result redirected: our test sets
    from utils.trainer_cls import given_dataloader_test

    result = save_load.load_attack_result("")
    scores = []
    for name in ("clean_test", "bd_test"):
        loader = torch.utils.data.DataLoader(result[name], batch_size=256, shuffle=False)
        metrics = given_dataloader_test(net, loader, nn.CrossEntropyLoss(), device="cpu")[0]
        scores.append(100 * metrics["test_acc"])
    return scores[0], scores[1]


def run_defense(checkout: Path, victim: ParityVictim, name: str, args: Namespace) -> OfficialResult:
    """``defense/<name>.py`` as ``__main__`` on our victim with ``args`` (our recipe's length and SGD)."""
    made: list[nn.Module] = []
    saved_cwd, root_handlers = Path.cwd(), list(logging.getLogger().handlers)
    with tempfile.TemporaryDirectory() as work, official_checkout(checkout), redirected(victim, made):
        config = yaml.safe_load((checkout / "config" / "defense" / name / "cifar10.yaml").read_text())
        config.update(cos_t_max=args.epochs, device="cpu", amp=False, pin_memory=False, num_workers=0,
                      non_blocking=False, dataset_path=work)  # fmt: skip
        (Path(work) / "config.yaml").write_text(yaml.safe_dump(config))
        np.savetxt(Path(work) / "index.txt", np.arange(len(victim.defender.data)), fmt="%d")
        argv = ["--yaml_path", f"{work}/config.yaml", "--result_file", "victim",
                "--index", f"{work}/index.txt", "--epochs", str(args.epochs),
                "--batch_size", str(args.batch_size), "--lr", str(args.lr),
                "--sgd_momentum", str(args.momentum), "--wd", str(args.wd),
                "--random_seed", str(args.seed)]  # fmt: skip
        victim_acc, victim_asr = official_reading(victim.fresh_net(), victim)
        os.chdir(work)
        logged = io.StringIO()  # the framework logs to stderr through the root logger
        try:
            with contextlib.redirect_stderr(logged):
                _, log, seconds = captured(lambda: run_script(checkout / "defense" / f"{name}.py", argv))
        finally:
            os.chdir(saved_cwd)
            for handler in set(logging.getLogger().handlers) - set(root_handlers):
                logging.getLogger().removeHandler(handler)
        if not made:
            raise RuntimeError(f"the official {name} built no model; its output ends:\n{log[-2000:]}")
        acc, asr = official_reading(made[0], victim)
    return OfficialResult(acc=acc, asr=asr, seconds=seconds, victim_acc=victim_acc, victim_asr=victim_asr,
                          log=log + logged.getvalue())  # fmt: skip


def runner(name: str) -> Callable[[Path, ParityVictim, Namespace], OfficialResult]:
    """The ``run_official`` of the adapter for BackdoorBench's ``defense/<name>.py``."""
    return lambda checkout, victim, args: run_defense(checkout, victim, name, args)
