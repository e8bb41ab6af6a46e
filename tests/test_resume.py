"""A victim training killed part-way (a session's end, a SLURM time limit) goes on from its checkpoint to
the uninterrupted run's victim, bit for bit, and leaves no checkpoint behind once the victim is cached."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from bench.attacks import Attack
from bench.attacks._adversarial import FGSMRandomStart
from bench.attacks.badnets import BadNets
from bench.attacks.combat import COMBAT, GeneratorStep
from bench.attacks.dynamic import Dynamic
from bench.attacks.lira import LIRA, TriggerStep
from bench.attacks.wanet import WaNet
from bench.core.engine import Perturb, Recipe, TrainingHooks, fit
from bench.run import victims
from bench.run.cache import Checkpoint, ModelCache
from bench.run.cell import Cell
from tests.conftest import CPU, bundle, tiny_model

RECIPE = {"epochs": 3, "batch_size": 50, "lr": 0.05}
T = TypeVar("T")


class KilledAfterSave(Checkpoint):
    """The cache's checkpoint, due after every epoch; its ``kill_after``-th save ends the process."""

    def __init__(self, cache: ModelCache, kill_after: int | None) -> None:
        super().__init__(cache, "victim", every_s=0.0)
        self.kill_after, self.saves = kill_after, 0

    def save(self, state: dict[str, Any]) -> None:
        super().save(state)  # through torch.save and a weights-only load: what a real resume reads
        self.saves += 1
        if self.saves == self.kill_after:
            raise KeyboardInterrupt


class TurnsOnAfterAnEpoch(Attack):
    """A flag set by ``after_epoch`` that changes the batches after it (as DFST's ``injector_ready``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ready = False

    def batch_hook(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return (x.flip(-1), y) if self.ready else (x, y)

    def after_epoch(self, model: nn.Module, epoch: int) -> None:
        self.ready = True

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return x


ATTACKS = {
    "flag": TurnsOnAfterAnEpoch,
    "badnets_in_batch": lambda: BadNets(poisoning="in_batch"),  # a batch generator made on the first batch
    "wanet": lambda: WaNet(),  # a noise generator
    "dynamic": lambda: Dynamic(),  # a trigger network and its Adam, trained with the classifier
}


def train(name: str, checkpoint: Checkpoint | None, schedule: str) -> tuple[nn.Module, Attack, dict]:
    """A fresh process's victim training: new model and attack objects, then ``fit``."""
    data = bundle(100)
    attack = ATTACKS[name]()
    attack.setup(data)
    model = tiny_model().train()
    stats = fit(model, data.train, Recipe(**RECIPE, schedule=schedule), CPU, hooks=attack, progress=False,
                checkpoint=checkpoint)  # fmt: skip
    return model, attack, stats


def whole_and_resumed(run: Callable[[Checkpoint | None], T], cache_dir: Path) -> tuple[T, T]:
    """``run(checkpoint)`` uninterrupted, and again killed after its first save and run on from it."""
    whole = run(None)
    with pytest.raises(KeyboardInterrupt):
        run(KilledAfterSave(ModelCache(cache_dir), kill_after=1))
    resumed_checkpoint = KilledAfterSave(ModelCache(cache_dir), kill_after=None)
    resumed = run(resumed_checkpoint)
    assert resumed_checkpoint.earlier_s > 0  # it did go on from the saved epoch
    return whole, resumed


def same_state(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize(("name", "schedule"), [("badnets_in_batch", "step"), ("wanet", "cosine"),
                                                ("dynamic", "cosine"), ("flag", "cosine")])  # fmt: skip
def test_a_killed_victim_training_resumes_to_the_uninterrupted_victim(
    tmp_path: Path, name: str, schedule: str
) -> None:
    (whole_model, whole_attack, whole), (model, attack, resumed) = whole_and_resumed(
        lambda checkpoint: train(name, checkpoint, schedule), tmp_path
    )
    assert same_state(whole_model.state_dict(), model.state_dict())
    assert same_state(whole_attack.training_state(), attack.training_state())
    assert resumed["loss_per_epoch"] == whole["loss_per_epoch"] and resumed["epochs"] == 3


def test_a_killed_victim_is_trained_on_from_its_checkpoint_and_the_checkpoint_removed(
    tmp_path: Path, monkeypatch
) -> None:
    """Through the pipeline's ``cached_victim``: the second process starts at the saved epoch, and once the
    victim's entry is written only the entry is left in the cache."""
    starts: list[int] = []
    real_fit = victims.fit

    def fit_killed_after_one_epoch(*args: Any, checkpoint: Checkpoint, **kwargs: Any) -> dict[str, Any]:
        checkpoint.every_s = 0.0
        first = len(starts) == 0
        original_save = checkpoint.save

        def save(state: dict[str, Any]) -> None:
            original_save(state)
            if first:
                raise KeyboardInterrupt

        checkpoint.save = save  # type: ignore[method-assign]
        starts.append(-1)
        stats = real_fit(*args, checkpoint=checkpoint, **kwargs)
        starts[-1] = stats["epochs"]
        return stats

    monkeypatch.setattr(victims, "fit", fit_killed_after_one_epoch)
    monkeypatch.setattr(victims, "build_model", lambda cell, data: tiny_model())
    cfg = OmegaConf.create({"cache_dir": str(tmp_path), "seed": 0, "progress": False, "eval_batch_size": 50,
                            "train": {"_target_": "bench.core.engine.Recipe", **RECIPE}})  # fmt: skip
    cell = Cell({}, cfg, {"seed": 0}, "cell", "victim", CPU, "fp32")
    data = bundle(100)

    def run() -> tuple[dict[str, Any], bool]:
        attack = BadNets(poisoning="in_batch")
        attack.setup(data)
        return victims.cached_victim(cell, "victim", data, attack)

    with pytest.raises(KeyboardInterrupt):
        run()
    assert len(list(tmp_path.glob("*.pt"))) == 1  # the checkpoint alone
    payload, hit = run()
    assert not hit and starts == [-1, 3] and len(payload["meta"]["loss_per_epoch"]) == 3
    assert [p.stem for p in tmp_path.glob("*.pt")] == ["victim"]  # the entry; its checkpoint is gone


def auxiliary_stage(name: str) -> tuple[TrainingHooks, Perturb | None, nn.Module | None]:
    """A fresh process's objects for an attack's auxiliary training (hours on a CPU, so resumable): the
    hooks, the batch perturbation, and the network trained beside the classifier (None: the classifier
    is the network)."""
    data = bundle(100)
    if name == "cl_fgsm_rs":  # CL's robust model: adversarial training from random starts
        return TrainingHooks(), FGSMRandomStart(8 / 255, 10 / 255, seed=0), None
    if name == "lira_stage1":  # LIRA: the trigger network and its Adam, a step before each classifier step
        lira = LIRA(lr=1e-3)
        lira.setup(data)
        return TriggerStep(lira, lira.trigger.train(), lira.lr), None, lira.trigger
    combat = COMBAT(width=8, depth=2)  # COMBAT: the generator, its SGD, schedule and random draws
    combat.setup(data)
    combat.trigger.train()
    return GeneratorStep(combat, tiny_model(), Recipe(**RECIPE), pc=1.0), None, combat.trigger


@pytest.mark.parametrize("name", ["cl_fgsm_rs", "lira_stage1", "combat_stage1"])
def test_a_killed_auxiliary_training_resumes_to_the_uninterrupted_networks(tmp_path: Path, name: str) -> None:
    def run(checkpoint: Checkpoint | None) -> tuple[nn.Module, nn.Module | None, dict[str, Any]]:
        hooks, perturb, network = auxiliary_stage(name)
        model = tiny_model().train()
        stats = fit(model, bundle(100).train, Recipe(**RECIPE), CPU, hooks=hooks, perturb=perturb,
                    progress=False, checkpoint=checkpoint)  # fmt: skip
        return model, network, stats

    (whole_model, whole_network, whole), (model, network, resumed) = whole_and_resumed(run, tmp_path)
    assert same_state(whole_model.state_dict(), model.state_dict())
    if network is not None:
        assert same_state(whole_network.state_dict(), network.state_dict())  # type: ignore[union-attr]
    assert resumed["loss_per_epoch"] == whole["loss_per_epoch"]
