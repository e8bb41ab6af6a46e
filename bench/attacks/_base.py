"""The attack contract shared by every attack.

An attack is an ``nn.Module`` so that everything random about its trigger (patterns, noise grids,
generator weights) lives in buffers/parameters, is saved in the model cache beside the victim and
makes the test-time trigger exactly the training-time one.

Life cycle, driven by ``bench.run.victims``:
1. ``setup(data)``: check the attack fits the dataset, build the seeded trigger (cheap, every run);
2. ``poison(train, ctx)``: only when the victim is trained (a cache miss): optimise what needs a
   model (``ctx.models`` trains and caches auxiliary classifiers) and return the training set;
3. the ``bench.core.engine.TrainingHooks`` during victim training: ``batch_hook(model, x, y)`` on every
   float batch (in-batch attacks, generators trained jointly with the classifier), ``after_step()``,
   ``after_epoch(model, epoch)``;
4. ``apply(x)``: the trigger on float images in [0, 1] (before normalisation), used at test time.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
import torch.nn as nn

from bench.core.engine import Checkpoint, Recipe, TrainingHooks
from bench.core.errors import ConfigError
from bench.core.images import DataBundle, ImageSet, quantize, to_float
from bench.core.schema import Fraction

# Trains an auxiliary network in place on the clean training set; may return facts about the training
# worth recording (e.g. LIRA's stage-1 ASR), cached with the network and kept in every victim record.
TrainNetwork = Callable[[nn.Module, ImageSet], dict[str, Any] | None]

# A TrainNetwork that saves its progress to a Checkpoint and starts from it when one was saved: the same
# answer as one uninterrupted run (the state holds every random generator it draws from).
ResumableTrain = Callable[[nn.Module, ImageSet, Checkpoint], dict[str, Any] | None]


class AuxiliaryModels(Protocol):
    """Models an attack needs before poisoning, trained once and cached like victims."""

    def clean_classifier(self) -> nn.Module:
        """The clean model of the cell (``attack=none``, same data, architecture, recipe and seed)."""
        ...

    def new_classifier(self) -> nn.Module:
        """An untrained classifier of the cell's architecture (seeded), e.g. a surrogate to train against."""
        ...

    def network(
        self,
        name: str,
        spec: dict[str, Any],
        module: nn.Module,
        train: TrainNetwork | ResumableTrain,
        *,
        data_only: bool = False,
        resumable: bool = False,
    ) -> nn.Module:
        """``module`` (a generator, an encoder...) with weights trained by ``train(module, clean_train_set)``
        on a cache miss, loaded from the cache on a hit; cached under the cell's data, model, recipe and
        seed plus ``name`` and ``spec`` (``data_only``: under the data and seed alone, shared by every
        architecture and recipe, for a network whose training never sees a classifier); returned on the
        cell's device in eval mode. ``resumable``: ``train`` is a ResumableTrain and gets a Checkpoint.
        The facts ``train`` returns go to the victim's record (``attack_info.aux_networks_facts``), from
        the cache on a hit."""
        ...

    def classifier(
        self,
        name: str,
        spec: dict[str, Any],
        train: TrainNetwork | ResumableTrain,
        *,
        resumable: bool = False,
    ) -> nn.Module:
        """A fresh classifier of the cell's architecture, trained by ``train(model, clean_train_set)``
        on a cache miss; cached under (the cell's data, model, recipe and seed, ``name``, ``spec``).
        ``resumable`` as for ``network``."""
        ...


@dataclass
class AttackContext:
    """What the pipeline lends an attack while it poisons: device, the victim recipe, auxiliary models."""

    device: torch.device
    recipe: Recipe  # the victim's: auxiliary classifiers are trained like it
    models: AuxiliaryModels
    progress: bool = True


def need_context(attack: Attack, ctx: AttackContext | None) -> AttackContext:
    if ctx is None:
        raise ValueError(f"{type(attack).__name__}.poison needs an AttackContext (it trains on a model)")
    return ctx


class Attack(nn.Module, TrainingHooks):
    """Base class. Subclasses implement ``apply`` and may override the other hooks."""

    has_trigger = True

    def __init__(self, target: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.target = target
        self.seed = seed
        self.info: dict[str, Any] = {}  # what poisoning reports (``attack_info`` in the record)
        self.data_dir: str | None = None  # set by ``setup``: where reference trigger files are read

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from the cell seed, so triggers are reproducible."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)

    @contextmanager
    def seeded(self, offset: int = 0) -> Iterator[None]:
        """Within the block torch's global RNG (weight initialisation) is seeded from the cell seed;
        the caller's RNG state is restored afterwards."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + offset)
            yield

    def setup(self, data: DataBundle) -> None:
        if not 0 <= self.target < data.num_classes:
            raise ConfigError(
                f"attack.target must be in [0, {data.num_classes - 1}] for {data.name}, got {self.target}"
            )
        self.data_dir = data.data_dir  # reference trigger files (bench.attacks._assets) are found there
        self.build(data.train.x.shape[1:])

    def build(self, image_shape: torch.Size) -> None:
        """Create the trigger for images of shape (C, H, W). Default: nothing to build."""

    def poison(self, train: ImageSet, ctx: AttackContext | None = None) -> ImageSet:
        return train

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement apply(x)")

    def training_state(self) -> dict[str, Any]:
        """Everything victim training changes in the attack, found by type so no attack lists it: its
        weights and buffers, the random generators and optimisers its hooks hold, its scalar attributes
        (flags such as DFST's injector_ready) and ``info``."""
        state: dict[str, Any] = {"module": self.state_dict(), "info": copy.deepcopy(self.info),
                                 "generators": {}, "optimizers": {}, "scalars": {}}  # fmt: skip
        for name, value in vars(self).items():
            if isinstance(value, torch.Generator):
                state["generators"][name] = value.get_state()
            elif isinstance(value, torch.optim.Optimizer):
                state["optimizers"][name] = value.state_dict()
            elif isinstance(value, bool | int | float):  # not paths: a resumed run may read files elsewhere
                state["scalars"][name] = value
        return state

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["module"])
        self.info = state["info"]
        for name, value in state["scalars"].items():
            setattr(self, name, value)
        for name, saved in state["generators"].items():
            setattr(self, name, torch.Generator().set_state(saved))
        for name, saved in state["optimizers"].items():
            getattr(self, name).load_state_dict(saved)

    @torch.no_grad()
    def apply_uint8(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """The trigger on stored uint8 images, returned as uint8 (what a poisoned file holds)."""
        device = next(itertools.chain(self.parameters(), self.buffers()), torch.empty(0)).device
        out = [quantize(self.apply(to_float(x[i : i + batch_size].to(device)))).cpu()
               for i in range(0, len(x), batch_size)]  # fmt: skip
        return torch.cat(out) if out else x.clone()


class JointlyTrainedAttack(Attack):
    """An attack whose trigger network learns during victim training, from the gradient of the
    classifier's own loss: ``batch_hook`` returns triggered images still attached to the network, and
    ``after_step`` steps the network's optimiser (created on the first batch, on the right device)."""

    def __init__(self, target: int = 0, seed: int = 0) -> None:
        super().__init__(target, seed)
        self.optimizer: torch.optim.Optimizer | None = None

    def make_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError(f"{type(self).__name__} must implement make_optimizer()")

    def joint_optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = self.make_optimizer()
        return self.optimizer

    def load_training_state(self, state: dict[str, Any]) -> None:
        if "optimizer" in state["optimizers"]:
            self.joint_optimizer()  # created on the first batch: the resumed run has not seen one yet
        super().load_training_state(state)

    def after_step(self) -> None:
        if self.optimizer is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


# fixed_subset: a seeded share of the training set is triggered once, before training (augmentation then
# moves the trigger with the image); in_batch: BackdoorVault's order, triggered in each batch after it.
Poisoning = Literal["fixed_subset", "in_batch"]


class PoisoningAttack(Attack):
    """Static data poisoning: a seeded fraction of the training set gets the trigger.

    Dirty-label (``clean_label=False``): ``poison_rate`` is the fraction of the whole training set,
    drawn from non-target images, relabelled to the target. Clean-label: only target-class images are
    triggered and no label changes; ``poison_rate`` is then the fraction of the whole training set
    (capped by the size of the target class).
    """

    clean_label = False

    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.1,
        seed: int = 0,
        poisoning: Poisoning = "fixed_subset",
    ) -> None:
        super().__init__(target, seed)
        self.poison_rate, self.poisoning = poison_rate, poisoning
        self.batch_gen: torch.Generator | None = None

    def poison_index(self, y: torch.Tensor) -> torch.Tensor:
        pool = torch.nonzero((y == self.target) if self.clean_label else (y != self.target)).flatten()
        k = round(self.poison_rate * len(y))
        if k > len(pool):
            kind = "target-class" if self.clean_label else "non-target"
            raise ConfigError(
                f"attack.poison_rate={self.poison_rate} asks for {k} poisoned images but only "
                f"{len(pool)} {kind} training images exist"
            )
        return pool[torch.randperm(len(pool), generator=self.generator(1))[:k]]

    def poison(self, train: ImageSet, ctx: AttackContext | None = None) -> ImageSet:
        if self.poisoning == "in_batch":  # the training set stays clean: batches are poisoned as they come
            self.poison_index(train.y)  # the same check that the rate can be met
            return train
        index = self.poison_index(train.y)
        x, y = train.x.clone(), train.y.clone()
        x[index] = self.poisoned_images(train.x[index], ctx)
        if not self.clean_label:
            y[index] = self.target
        return ImageSet(x, y)

    def augmented_batch_hook(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``in_batch`` (BackdoorVault's order): in every augmented training batch, ``poison_rate`` of it,
        drawn afresh from its non-target images (dirty-label, relabelled) or target-class images
        (clean-label, as many as the batch holds), gets the trigger after crop and flip."""
        if self.poisoning != "in_batch":
            return x, y
        if self.batch_gen is None:
            self.batch_gen = self.generator(5)
        pool = torch.nonzero((y == self.target) if self.clean_label else (y != self.target)).flatten()
        k = min(len(pool), round(self.poison_rate * len(y)))
        if k == 0:
            return x, y
        chosen = pool[torch.randperm(len(pool), generator=self.batch_gen)[:k].to(pool.device)]
        x, y = x.clone(), y.clone()
        x[chosen] = self.apply(x[chosen]).to(x.dtype)
        y[chosen] = self.target
        return x, y

    def poisoned_images(self, x: torch.Tensor, ctx: AttackContext | None) -> torch.Tensor:
        """The uint8 training images that replace the chosen ones; default: the test-time trigger."""
        return self.apply_uint8(x)
