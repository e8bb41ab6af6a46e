"""One grid cell: data -> backdoored model (cached) -> defense -> metrics -> record (+ W&B)."""

from __future__ import annotations

import json
import logging
import platform
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from filelock import FileLock, Timeout
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from attacks import Attack, AttackContext
from bench.cache import ModelCache, cache_key
from bench.engine import fit, prepare_model, set_precision
from bench.errors import ConfigError, check_fraction
from bench.metrics import TriggeredTestSet, der, detection, evaluate
from bench.records import SCHEMA_VERSION, claim_path, failure_path, record_path, write_record
from datasets import DataBundle, ImageSet, balanced_subset
from defenses import DefenderContext
from models import Normalized

log = logging.getLogger(__name__)

# What conf/attack/none.yaml composes to: the clean model of a row shares the victims' cache.
CLEAN_ATTACK = {"_target_": "attacks.none.NoAttack"}
# Keys that change where or how a cell runs, never its result.
RUN_ONLY_KEYS = (
    "results_dir", "cache_dir", "data_dir", "logger", "device", "progress", "eval_batch_size", "overwrite",
)  # fmt: skip
# Keys added after records were committed, with the value every earlier record ran with: at that value a
# key stays out of the hash, so earlier cell ids and cache keys remain valid.
LATER_KEYS = {"precision": "auto", "train.label_smoothing": 0.0}
DATA_ACCESS_KEYS = ("root", "download")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_name() -> str:
    """The processor's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compute_info() -> dict[str, Any]:
    """What a result depends on beyond the config: the processor and thread count choose the kernels and
    the order of float sums, so CPU runs reproduce bit for bit only when both match."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu_name(), "threads": torch.get_num_threads(), "gpu": gpu}


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)  # fmt: skip
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def semantic_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus keys that cannot change the result (paths, logging, device)."""
    out = {k: v for k, v in container(cfg).items() if k not in RUN_ONLY_KEYS}
    for dotted, default in LATER_KEYS.items():
        *parents, key = dotted.split(".")
        node = out
        for p in parents:
            node = node.get(p) or {}
        if key in node and node[key] == default:
            del node[key]
    out["dataset"] = {k: v for k, v in out["dataset"].items() if k not in DATA_ACCESS_KEYS}
    return out


def model_key(sem: dict[str, Any], **extra: Any) -> str:
    """Cache key of a model trained for this cell's dataset, architecture, recipe and seed, plus ``extra``
    (the attack for victims; the name and spec of an auxiliary model)."""
    picked = {k: sem[k] for k in ("dataset", "model", "train", "seed", "precision") if k in sem}
    return cache_key({**picked, **extra})


def victim_key(sem: dict[str, Any], attack: dict[str, Any]) -> str:
    """Everything that determines the backdoored model: dataset, model, attack, recipe, seed."""
    return model_key(sem, attack=attack)


def build_logger(node: DictConfig | None) -> Any:
    """The configured logger, or None for ``logger=none``; an entry without ``_target_`` is an error."""
    if not node:
        return None
    if "_target_" not in node:
        raise ConfigError(f"logger config has no _target_: {container(node)}")
    return instantiate(node)


def build_model(cfg: DictConfig, data: DataBundle) -> nn.Module:
    return Normalized(instantiate(cfg.model, num_classes=data.num_classes), data.mean, data.std)


def load_model(
    cfg: DictConfig, data: DataBundle, state: dict[str, torch.Tensor], device: torch.device
) -> nn.Module:
    """The cell's architecture with cached weights, on ``device`` in channels_last."""
    model = build_model(cfg, data)
    model.load_state_dict(state)
    return prepare_model(model, device)


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict on the CPU, as the model cache stores it."""
    return {k: v.cpu() for k, v in module.state_dict().items()}


class CellModels:
    """Auxiliary classifiers for the attacks of one cell (``AttackContext.models``), cached like victims."""

    def __init__(self, cfg: DictConfig, data: DataBundle, device: torch.device) -> None:
        self.cfg, self.data, self.device = cfg, data, device
        self.sem = semantic_config(cfg)
        self.cache = ModelCache(cfg.cache_dir)
        # training seconds of every auxiliary network used, cached or not: what poisoning really costs
        self.train_s: dict[str, float] = {}

    def load(self, payload: dict[str, Any]) -> nn.Module:
        return load_model(self.cfg, self.data, payload["model"], self.device).eval()

    def clean_classifier(self) -> nn.Module:
        def train() -> dict[str, Any]:
            clean: Attack = instantiate(CLEAN_ATTACK, seed=self.cfg.seed)
            clean.setup(self.data)
            return train_victim(self.cfg, self.data, clean, self.device)

        payload, _ = self.cache.get_or_create(victim_key(self.sem, CLEAN_ATTACK), train)
        self.train_s["clean_classifier"] = payload["meta"]["train_s"] + payload["meta"].get("aux_train_s", 0)
        return self.load(payload)

    def new_classifier(self) -> nn.Module:
        torch.manual_seed(self.cfg.seed)
        return build_model(self.cfg, self.data)

    def network(
        self, name: str, spec: dict[str, Any], module: nn.Module, train: Callable[[nn.Module, ImageSet], None]
    ) -> nn.Module:
        def build() -> dict[str, Any]:
            start = time.perf_counter()
            train(module, self.data.train)
            return {"model": cpu_state(module), "meta": {"train_s": round(time.perf_counter() - start, 3)}}

        payload, _ = self.cache.get_or_create(model_key(self.sem, auxiliary=name, spec=spec), build)
        self.train_s[name] = payload["meta"]["train_s"]
        module.load_state_dict(payload["model"])
        return module.to(self.device).eval()

    def classifier(
        self, name: str, spec: dict[str, Any], train: Callable[[nn.Module, ImageSet], None]
    ) -> nn.Module:
        return prepare_model(self.network(name, spec, self.new_classifier(), train), self.device)


def train_victim(cfg: DictConfig, data: DataBundle, attack: Attack, device: torch.device) -> dict[str, Any]:
    """Poison (training any auxiliary model the attack needs) and train the model from scratch; the
    payload the cache stores."""
    recipe = instantiate(cfg.train)
    attack.to(device)
    models = CellModels(cfg, data, device)
    start = time.perf_counter()
    poisoned = attack.poison(data.train, AttackContext(device, recipe, models, cfg.progress))
    aux_s = time.perf_counter() - start
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data)
    start = time.perf_counter()
    stats = fit(model, poisoned, recipe, device, hooks=attack,
                seed=cfg.seed, desc="victim", progress=cfg.progress)  # fmt: skip
    train_s = time.perf_counter() - start
    acc = evaluate(model, data.test, None, attack.target, device, cfg.eval_batch_size)["acc"]
    return {
        "model": cpu_state(model),
        "attack": cpu_state(attack),
        "meta": {
            "acc": acc,
            "train_s": round(train_s, 3),
            "aux_train_s": round(aux_s, 3),
            "images_per_s": round(stats["images_per_s"], 1),
            "compute": compute_info(),
            "attack_info": {
                **attack.info,
                **({"aux_networks_train_s": models.train_s} if models.train_s else {}),
            },
        },  # fmt: skip
    }


def cell_id(names: dict[str, str], sem: dict[str, Any]) -> str:
    """A readable, unique file stem for a cell; the hash separates variants and overrides."""
    parts = [names[g] for g in ("dataset", "model", "attack", "defense")]
    return "__".join([*parts, f"s{sem['seed']}", cache_key(sem)[:10]])


@dataclass
class Victim:
    """The (backdoored) model of a cell with the data and attack it was made with."""

    data: DataBundle
    attack: Attack
    model: nn.Module
    payload: dict[str, Any]
    cache_hit: bool
    key: str

    def evaluation(self, cfg: DictConfig, device: torch.device) -> tuple[TriggeredTestSet | None, dict]:
        """The triggered test set and the victim's own ACC/ASR/RA, computed once per victim and cached
        beside it, so the defenses of a row do not each re-trigger and re-evaluate the test set."""

        def build() -> dict[str, Any]:
            attack, test = self.attack, self.data.test
            triggered = TriggeredTestSet.build(attack, test) if attack.has_trigger else None
            metrics = evaluate(self.model, test, triggered, attack.target, device, cfg.eval_batch_size)
            return {"metrics": metrics, "triggered": vars(triggered) if triggered else None}

        payload, _ = ModelCache(cfg.cache_dir).get_or_create(cache_key({"evaluated_victim": self.key}), build)
        triggered = TriggeredTestSet(**payload["triggered"]) if payload["triggered"] else None
        return triggered, payload["metrics"]

    def defender_context(self, cfg: DictConfig, device: torch.device) -> DefenderContext:
        """The defender's clean data: a seeded, class-balanced share of the clean training set."""
        defender = self.data.train.subset(balanced_subset(self.data.train.y, cfg.defender_ratio, cfg.seed))
        return DefenderContext(defender, self.data.num_classes, device, cfg.seed, cfg.progress)


def load_victim(cfg: DictConfig, device: torch.device) -> Victim:
    """Load the cell's data and victim model, training (and caching) the model on a cache miss."""
    check_fraction("defender_ratio", cfg.defender_ratio, high_closed=False)
    set_precision(cfg.precision)  # for the victim's training and everything the cell does after it
    seed_everything(cfg.seed)
    data: DataBundle = instantiate(cfg.dataset, data_dir=cfg.data_dir).load()
    attack: Attack = instantiate(cfg.attack, seed=cfg.seed)
    attack.setup(data)
    sem = semantic_config(cfg)
    key = victim_key(sem, sem["attack"])
    payload, hit = ModelCache(cfg.cache_dir).get_or_create(
        key, lambda: train_victim(cfg, data, attack, device)
    )
    attack.load_state_dict(payload["attack"])
    attack.to(device).eval()
    return Victim(data, attack, load_model(cfg, data, payload["model"], device), payload, hit, key)


def run_cell(cfg: DictConfig, names: dict[str, str]) -> dict[str, Any] | None:
    """Run one cell and return its record (also written to ``results_dir``). A cell whose record exists
    is not run again unless ``overwrite=true``: sweeps resume where they stopped. A cell that another
    process is running (it holds the cell's claim) is skipped and gives None, so several sweeps over one
    list share its cells: ``scripts/run_cpu_table1.sh`` runs one per core."""
    sem = semantic_config(cfg)
    cid = cell_id(names, sem)
    path = record_path(cfg.results_dir, cid)
    path.parent.mkdir(parents=True, exist_ok=True)
    claim = FileLock(str(claim_path(cfg.results_dir, cid)), timeout=0)
    try:
        claim.acquire()
    except Timeout:
        log.info("cell running in another process, skipped: %s", path)
        return None
    try:
        if path.exists() and not cfg.get("overwrite", False):  # checked under the claim: no double run
            log.info("record exists, cell skipped (overwrite=true redoes it): %s", path)
            return json.loads(path.read_text())
        return run_claimed_cell(cfg, names, sem, cid, path)
    finally:
        claim.release()
        Path(claim.lock_file).unlink(missing_ok=True)


def run_claimed_cell(
    cfg: DictConfig, names: dict[str, str], sem: dict[str, Any], cid: str, path: Path
) -> dict[str, Any]:
    """The cell's work, from the cached victim to the written record."""
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    device = resolve_device(cfg.device)
    defense = instantiate(cfg.defense)
    logger = build_logger(cfg.get("logger"))
    victim = load_victim(cfg, device)
    data, attack, model, payload = victim.data, victim.attack, victim.model, victim.payload
    clean_key = victim_key(sem, CLEAN_ATTACK)
    clean = payload if sem["attack"] == CLEAN_ATTACK else ModelCache(cfg.cache_dir).load(clean_key)

    start = time.perf_counter()
    triggered, before = victim.evaluation(cfg, device)
    eval_s = time.perf_counter() - start

    ctx = victim.defender_context(cfg, device)
    start = time.perf_counter()
    model, info = defense.repair(model, ctx)
    defense_s = time.perf_counter() - start

    start = time.perf_counter()
    after = evaluate(model, data.test, triggered, attack.target, device, cfg.eval_batch_size)
    detection_info = detection(model, data.test, triggered, device, cfg.eval_batch_size)
    eval_s += time.perf_counter() - start

    record = {
        "schema_version": SCHEMA_VERSION,
        "cell_id": cid,
        **{g: names[g] for g in ("dataset", "model", "attack", "defense")},
        "seed": cfg.seed,
        "acc_clean_model": clean["meta"]["acc"] if clean else None,
        "acc_before": before["acc"],
        "asr_before": before["asr"],
        "ra_before": before["ra"],
        **after,
        "der": der(before["acc"], before["asr"], after["acc"], after["asr"]),
        "attack_train_s": payload["meta"]["train_s"],
        "aux_train_s": payload["meta"].get("aux_train_s"),
        "attack_info": payload["meta"].get("attack_info", {}),
        "defense_s": round(defense_s, 3),
        "eval_s": round(eval_s, 3),
        "cache_hit": victim.cache_hit,
        "device": str(device),
        "compute": {**compute_info(), "victim": payload["meta"].get("compute")},
        "git_sha": git_sha(),
        "started_at": started_at,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": container(cfg),
        "defense_info": info,
        "detection_info": detection_info,
    }
    write_record(path, record)
    failure_path(cfg.results_dir, cid).unlink(missing_ok=True)  # a failure of an earlier attempt
    if logger is not None:
        logger.log_record(record)
    return record
