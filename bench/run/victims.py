"""Victims: the (backdoored) model of a cell, trained once per (dataset, model, attack, recipe, seed) and
kept in the model cache with what its training reported; the attacks' auxiliary networks, cached alike;
and the victim's own evaluation, cached beside it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from bench.attacks import Attack, AttackContext, ResumableTrain, TrainNetwork
from bench.attacks._base import JointlyTrainedAttack
from bench.core.engine import fit, precision, prepare_model
from bench.core.images import DataBundle, ImageSet, balanced_subset
from bench.defenses import DefenderContext
from bench.models import Normalized
from bench.run.cache import Checkpoint, cache_key
from bench.run.cell import Cell
from bench.run.host import compute_info, seed_everything
from bench.run.identity import CLEAN, CLEAN_ATTACK, data_model_key, model_key, victim_key
from bench.run.metrics import TriggeredTestSet, evaluate

StateDict = dict[str, torch.Tensor]


@dataclass
class VictimMeta:
    """What training a victim reported (stored in its cache entry and as its summary)."""

    acc: float
    train_s: float
    aux_train_s: float = 0.0  # the attack's own networks and poisoning, before the victim's training
    images_per_s: float | None = None
    compute: dict[str, Any] | None = None
    attack_info: dict[str, Any] = field(default_factory=dict)
    loss_per_epoch: list[float] = field(default_factory=list)  # the victim's training curve
    acc_per_epoch: list[float] = field(default_factory=list)  # and its training accuracy (%) per epoch


@dataclass
class VictimEntry:
    """A victim's cache entry: the model's and the attack's weights (the trigger) and ``VictimMeta``."""

    model: StateDict
    attack: StateDict
    meta: VictimMeta

    def payload(self) -> dict[str, Any]:
        return {"model": self.model, "attack": self.attack, "meta": asdict(self.meta)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> VictimEntry:
        return cls(payload["model"], payload["attack"], victim_meta(payload["meta"]))


def victim_meta(stored: dict[str, Any]) -> VictimMeta:
    """``VictimMeta`` from a cache entry's meta (entries older than a field get its default)."""
    return VictimMeta(**{k: v for k, v in stored.items() if k in VictimMeta.__dataclass_fields__})


@dataclass
class VictimEvaluation:
    """The victim's ACC/ASR/RA and its triggered test set (cached: a generator's trigger is costly)."""

    metrics: dict[str, float | None]
    triggered: TriggeredTestSet | None

    def payload(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "triggered": vars(self.triggered) if self.triggered else None}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> VictimEvaluation:
        triggered = payload["triggered"]
        return cls(payload["metrics"], TriggeredTestSet(**triggered) if triggered else None)


def build_model(cell: Cell, data: DataBundle) -> nn.Module:
    return Normalized(instantiate(cell.cfg.model, num_classes=data.num_classes), data.mean, data.std)


def load_model(cell: Cell, data: DataBundle, state: StateDict) -> nn.Module:
    """The cell's architecture with cached weights, on the cell's device in channels_last."""
    model = build_model(cell, data)
    model.load_state_dict(state)
    return prepare_model(model, cell.device)


def cpu_state(module: nn.Module) -> StateDict:
    """A state dict on the CPU, as the model cache stores it."""
    return {k: v.cpu() for k, v in module.state_dict().items()}


class CachedAuxiliaryModels:
    """``bench.attacks.AuxiliaryModels`` for one cell: every network an attack trains before poisoning
    is cached under the cell's data, model, recipe and seed plus the network's name and spec."""

    def __init__(self, cell: Cell, data: DataBundle) -> None:
        self.cell, self.data = cell, data
        # training seconds of every auxiliary network used, cached or not: what poisoning really costs
        self.train_s: dict[str, float] = {}
        # what each network's training reported about itself (e.g. LIRA's stage-1 ASR), cached with it so a
        # cache hit reports it too
        self.facts: dict[str, dict[str, Any]] = {}

    def clean_classifier(self) -> nn.Module:
        clean: Attack = instantiate(CLEAN_ATTACK, seed=self.cell.cfg.seed)
        clean.setup(self.data)
        payload, _ = cached_victim(self.cell, victim_key(self.cell.sem, CLEAN), self.data, clean)
        entry = VictimEntry.from_payload(payload)
        self.train_s["clean_classifier"] = entry.meta.train_s + entry.meta.aux_train_s
        return load_model(self.cell, self.data, entry.model).eval()

    def new_classifier(self) -> nn.Module:
        torch.manual_seed(self.cell.cfg.seed)
        return build_model(self.cell, self.data)

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
        key = (data_model_key if data_only else model_key)(self.cell.sem, auxiliary=name, spec=spec)

        def build(checkpoint: Checkpoint | None = None) -> dict[str, Any]:
            start = time.perf_counter()
            if checkpoint is not None:
                facts = train(module, self.data.train, checkpoint) or {}  # type: ignore[call-arg]
                train_s = checkpoint.seconds  # every process's share of a resumed training
            else:
                facts = train(module, self.data.train) or {}  # type: ignore[call-arg]
                train_s = time.perf_counter() - start
            meta = {"train_s": round(train_s, 3), **({"facts": facts} if facts else {})}
            return {"model": cpu_state(module), "meta": meta}

        cache = self.cell.cache
        payload, _ = (
            cache.get_or_create_resumable(key, build) if resumable else cache.get_or_create(key, build)
        )
        self.train_s[name] = payload["meta"]["train_s"]
        if payload["meta"].get("facts"):
            self.facts[name] = payload["meta"]["facts"]
        module.load_state_dict(payload["model"])
        return module.to(self.cell.device).eval()

    def classifier(
        self,
        name: str,
        spec: dict[str, Any],
        train: TrainNetwork | ResumableTrain,
        *,
        resumable: bool = False,
    ) -> nn.Module:
        network = self.network(name, spec, self.new_classifier(), train, resumable=resumable)
        return prepare_model(network, self.cell.device)


def cached_victim(cell: Cell, key: str, data: DataBundle, attack: Attack) -> tuple[dict[str, Any], bool]:
    """(payload, cache_hit) of the victim cached under ``key``, trained on a miss; the training saves a
    checkpoint beside the entry every ten minutes, so a killed run (a session's end, a SLURM time limit)
    goes on from there the next time and gives the uninterrupted run's victim."""
    return cell.cache.get_or_create_resumable(
        key, lambda checkpoint: train_victim(cell, data, attack, checkpoint).payload()
    )


def train_victim(cell: Cell, data: DataBundle, attack: Attack, checkpoint: Checkpoint) -> VictimEntry:
    """Poison (training any auxiliary network the attack needs) and train the model from scratch (or
    from ``checkpoint``), at the cell's precision whoever asks (a cell's run, or a script for a network
    the cache misses)."""
    with precision(cell.precision):
        cfg, device = cell.cfg, cell.device
        recipe = instantiate(cfg.train)
        attack.to(device)
        models = CachedAuxiliaryModels(cell, data)
        start = time.perf_counter()
        poisoned = attack.poison(data.train, AttackContext(device, recipe, models, cfg.progress))
        aux_s = time.perf_counter() - start
        torch.manual_seed(cfg.seed)
        model = build_model(cell, data)
        stats = fit(model, poisoned, recipe, device, hooks=attack, seed=cfg.seed, desc="victim",
                    progress=cfg.progress, checkpoint=checkpoint)  # fmt: skip
        train_s = stats["seconds"]
        acc = evaluate(model, data.test, None, attack.target, device, cfg.eval_batch_size)["acc"]
        aux = {"aux_networks_train_s": models.train_s, "aux_networks_facts": models.facts}
        info = {**attack.info, **{k: v for k, v in aux.items() if v}}
        meta = VictimMeta(acc, round(train_s, 3), round(aux_s, 3), round(stats["images_per_s"], 1),
                          compute_info(), info, stats["loss_per_epoch"], stats["acc_per_epoch"])  # fmt: skip
        return VictimEntry(cpu_state(model), cpu_state(attack), meta)


@dataclass
class Victim:
    """The (backdoored) model of a cell with the data and attack it was made with."""

    cell: Cell
    data: DataBundle
    attack: Attack
    model: nn.Module
    entry: VictimEntry
    cache_hit: bool

    def evaluation(self) -> VictimEvaluation:
        """The triggered test set and the victim's own ACC/ASR/RA, computed once per victim and cached
        beside it, so the defenses of a row do not each re-trigger and re-evaluate the test set."""

        def build() -> dict[str, Any]:
            attack, test = self.attack, self.data.test
            triggered = (
                TriggeredTestSet.build(attack.apply_uint8, attack.target, test)
                if attack.has_trigger
                else None
            )
            metrics = evaluate(self.model, test, triggered, attack.target, self.cell.device,
                               self.cell.cfg.eval_batch_size)  # fmt: skip
            return VictimEvaluation(metrics, triggered).payload()

        with precision(self.cell.precision):
            payload, _ = self.cell.cache.get_or_create(evaluation_key(self.cell.victim_key), build)
        return VictimEvaluation.from_payload(payload)

    def defender_context(self) -> DefenderContext:
        """The defender's clean data: a seeded, class-balanced share of the clean training set."""
        cfg = self.cell.cfg
        defender = self.data.train.subset(defender_indices(self.data.train, cfg))
        return DefenderContext(defender, self.data.num_classes, self.cell.device, cfg.seed, cfg.progress)


def defender_indices(train: ImageSet, cfg: DictConfig) -> torch.Tensor:
    """Which training images the defender holds (``defender_ratio`` of every class, seeded); a share that
    leaves a class without an image is refused with the numbers."""
    setting = f"defender_ratio={cfg.defender_ratio} of {len(train)} training images"
    return balanced_subset(train.y, cfg.defender_ratio, cfg.seed, setting)


def evaluation_key(victim: str) -> str:
    return cache_key({"evaluated_victim": victim})


def data_and_attack(cell: Cell) -> tuple[DataBundle, Attack]:
    """The cell's data and its attack, set up (its seeded trigger built) but not yet poisoning."""
    cfg = cell.cfg
    seed_everything(cfg.seed)
    data: DataBundle = instantiate(cfg.dataset, data_dir=cfg.data_dir).load()
    defender_indices(data.train, cfg)  # refused here, before a victim is trained for nothing
    attack: Attack = instantiate(cfg.attack, seed=cfg.seed)
    attack.setup(data)
    return data, attack


def load_or_train_victim(cell: Cell) -> Victim:
    """The cell's data and victim model: from the model cache, or trained (and cached) on a miss."""
    data, attack = data_and_attack(cell)
    with precision(cell.precision):  # also when a script, not a cell's run, asks for the victim
        payload, hit = cached_victim(cell, cell.victim_key, data, attack)
    entry = VictimEntry.from_payload(payload)
    attack.load_state_dict(entry.attack)
    attack.to(cell.device).eval()
    return Victim(cell, data, attack, load_model(cell, data, entry.model), entry, hit)


def trigger_of(cell: Cell) -> tuple[DataBundle, Attack]:
    """The cell's data and its attack with the victim's trigger, without training the victim where the
    trigger does not learn with it: poisoning alone (its auxiliary networks from the cache) fixes the
    trigger of every attack but those trained jointly with the classifier (Dynamic, IA), whose victim is
    loaded or trained, as is any victim already in the cache."""
    joint = issubclass(get_class(cell.cfg.attack._target_), JointlyTrainedAttack)
    if joint or cell.cache.meta(cell.victim_key) is not None:
        victim = load_or_train_victim(cell)
        return victim.data, victim.attack
    data, attack = data_and_attack(cell)
    attack.to(cell.device)
    poison_training_set(cell, data, attack)
    return data, attack.eval()


def poison_training_set(cell: Cell, data: DataBundle, attack: Attack) -> ImageSet:
    """The training set as ``attack`` poisons it for ``cell`` (its auxiliary networks from the cache),
    with gradients on whatever the caller's mode: poisoning may optimise (Trojan's pattern)."""
    with precision(cell.precision), torch.enable_grad():
        recipe, models = instantiate(cell.cfg.train), CachedAuxiliaryModels(cell, data)
        return attack.poison(data.train, AttackContext(cell.device, recipe, models, cell.cfg.progress))
