"""ANP's official code (csdongxian/ANP_backdoor: ``optimize_mask_cifar.py``, then
``prune_neuron_cifar.py --pruning-by threshold``) on our victim, its scripts run as ``__main__``, I/O
redirected.

Redirected, nothing else: ``models.resnet18`` builds our victim's network (with the checkout's own
``NoisyBatchNorm2d`` in place of each BatchNorm2d when it asks for one) and ``torch.load`` returns our
victim's weights; ``CIFAR10`` serves our defender's training split (train) or test set (test) through the
scripts' own transforms; ``split_dataset`` hands that training split on whole as the clean validation
data the masks are learnt on; ``add_predefined_trigger_cifar`` serves our triggered non-target test
images; ``Normalize`` gets the victim's mean and std. Its 2,000 iterations, batch 128, eps 0.4, one
sign step, alpha 0.2, mask lr 0.2, crop/flip augmentation and data sampling are its own. The result is the
pruning script's row at threshold 0.2 (the repository's recipe); the log keeps its ``mask_values.txt``
(every neuron's mask, to set beside our record's ``pruned_neurons``). Its mask script also evaluates the
test set every 500 iterations; that time is in ``ref_s``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn as nn
import torchvision
from harness import OfficialResult, ParityVictim, PILImages, captured, loading, official_checkout, run_script
from omegaconf import DictConfig

from bench.core.images import ImageSet

NAME = "anp"
# Ours in the official configuration: every neuron whose mask ends below the threshold is pruned (the
# official threshold rule; our default also stops where the defender's validation accuracy drops 5 points);
# the same with the mask learning under bf16 autocast (the speed option, measured against fp32 here).
SETTINGS = {
    "threshold=0.2": ["defense.tolerance=1.0"],
    "threshold=0.2+gradient=bf16": ["defense.tolerance=1.0", "defense.gradient=bf16"],
    "tolerance=0.05": [],
}
ROW = re.compile(
    r"^([\d.]+) \t (\S+) \t (\S+) \t ([\d.]+) \t ([\d.]+) \t ([\d.]+) \t ([\d.]+) \t ([\d.]+)$", re.M
)


def official_config(cfg: DictConfig, victim: ParityVictim) -> Namespace:
    d = cfg.defense
    return Namespace(
        iterations=d.iterations, batch_size=d.batch_size, mask_lr=d.mask_lr, eps=d.eps, anp_steps=d.anp_steps,
        anp_alpha=d.anp_alpha, threshold=d.threshold, seed=victim.defender.seed,
    )  # fmt: skip


def with_norm_layer(net: nn.Module, norm_layer: type[nn.Module]) -> nn.Module:
    """``net`` with every BatchNorm2d replaced by ``norm_layer`` (same size and state, its extra state at
    its own initialisation)."""
    for module in list(net.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.BatchNorm2d:
                new = norm_layer(child.num_features)
                new.load_state_dict(child.state_dict(), strict=False)
                setattr(module, child_name, new)
    return net


@contextlib.contextmanager
def redirected(victim: ParityVictim, checkout: Path) -> Iterator[None]:
    import data.poison_cifar as poison  # the checkout's modules, as its scripts import them
    import models

    def cifar10(root: str, train: bool = True, download: bool = False, transform=None):  # noqa: ANN001
        return PILImages(victim.defender_train if train else victim.test, transform)

    def triggered(data_set, trigger_info):  # noqa: ANN001
        t = victim.triggered
        return PILImages(ImageSet(t.x, torch.full_like(t.y, victim.target)), data_set.transform)

    def resnet18(num_classes: int = 10, norm_layer: type[nn.Module] | None = None) -> nn.Module:
        net = victim.fresh_net()
        return with_norm_layer(net, norm_layer) if norm_layer is not None else net

    normalize = torchvision.transforms.Normalize
    saved = (
        torchvision.datasets.CIFAR10,
        poison.split_dataset,
        poison.add_predefined_trigger_cifar,
        models.resnet18,
    )
    torchvision.datasets.CIFAR10 = cifar10
    poison.split_dataset = lambda dataset, val_frac=0.1, perm=None: (None, dataset)
    poison.add_predefined_trigger_cifar = triggered
    models.resnet18 = resnet18
    torchvision.transforms.Normalize = lambda mean, std, inplace=False: normalize(victim.mean, victim.std)
    cwd = os.getcwd()
    os.chdir(checkout)  # its scripts read ./data/cifar_shuffle.txt
    try:
        yield
    finally:
        os.chdir(cwd)
        torchvision.transforms.Normalize = normalize
        (torchvision.datasets.CIFAR10, poison.split_dataset, poison.add_predefined_trigger_cifar,
         models.resnet18) = saved  # fmt: skip


def run_official(checkout: Path, victim: ParityVictim, args: Namespace) -> OfficialResult:
    with tempfile.TemporaryDirectory() as out, official_checkout(checkout), redirected(victim, checkout):
        torch.manual_seed(args.seed)
        common = ["--checkpoint", "victim", "--batch-size", str(args.batch_size), "--output-dir", out]
        with loading(victim.fresh_net().state_dict()):
            _, mask_log, seconds = captured(lambda: run_script(checkout / "optimize_mask_cifar.py", [
                *common, "--lr", str(args.mask_lr), "--nb-iter", str(args.iterations), "--anp-eps",
                str(args.eps), "--anp-steps", str(args.anp_steps), "--anp-alpha", str(args.anp_alpha),
            ]))  # fmt: skip
            _, prune_log, _ = captured(lambda: run_script(checkout / "prune_neuron_cifar.py", [
                *common, "--mask-file", str(Path(out) / "mask_values.txt"), "--pruning-by", "threshold",
                "--pruning-max", str(args.threshold), "--pruning-step", "0.05",
            ]))  # fmt: skip
        masks = (Path(out) / "mask_values.txt").read_text()  # every mask, to compare neuron by neuron
    rows = {round(float(m.group(4)), 4): m for m in ROW.finditer(prune_log)}
    row = rows.get(round(args.threshold, 4))
    if row is None:
        raise RuntimeError(f"the official pruning printed no row at {args.threshold}:\n{prune_log[-2000:]}")
    first = re.search(
        r"^0 \t None +\t None +\t ([\d.]+) \t ([\d.]+) \t ([\d.]+) \t ([\d.]+)$", prune_log, re.M
    )
    return OfficialResult(
        acc=100 * float(row.group(8)),
        asr=100 * float(row.group(6)),
        seconds=seconds,
        victim_acc=100 * float(first.group(4)) if first else None,
        victim_asr=100 * float(first.group(2)) if first else None,
        log=f"{mask_log}{prune_log}\n# mask_values.txt\n{masks}",
    )
