"""The one value naming a grid cell, built once at entry and handed to everything that works on it: its
group names, config and semantic (hashed) config, its id, where its record, claim and failure files go,
its victim's cache key, device and numeric precision."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, open_dict

from bench.config import compose_config
from bench.run.cache import ModelCache
from bench.run.host import resolve_device
from bench.run.identity import GROUPS, cell_id, cell_label, semantic_config, victim_key
from bench.run.records import claim_path, failure_path, record_path
from bench.run.validation import validate


def compose_job(overrides: list[str]) -> tuple[DictConfig, dict[str, str]]:
    """(config, chosen option per group), exactly as ``python -m bench <overrides>`` sees them, unchecked."""
    cfg = compose_config(overrides, return_hydra_config=True)
    names = {g: cfg.hydra.runtime.choices[g] for g in GROUPS}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, names


@dataclass(frozen=True)
class Cell:
    """One cell of a grid (``Cell.of``: after every setting of its config is checked)."""

    names: dict[str, str]  # the option of each group: dataset, model, attack, defense
    cfg: DictConfig
    sem: dict[str, Any]
    id: str
    victim_key: str
    device: torch.device
    precision: str

    @classmethod
    def of(cls, cfg: DictConfig, names: dict[str, str]) -> Cell:
        """The cell of ``cfg`` (``names``: the option Hydra chose in each group), after checking every key
        of it (``bench.run.validation``)."""
        validate(cfg)
        sem = semantic_config(cfg, names)
        key = victim_key(sem, sem["attack"])
        return cls(names, cfg, sem, cell_id(names, sem), key, resolve_device(cfg.device), cfg.precision)

    @classmethod
    def compose(cls, overrides: list[str]) -> Cell:
        """The cell ``python -m bench <overrides>`` would run (for scripts and tests)."""
        return cls.of(*compose_job(overrides))

    @property
    def label(self) -> str:
        """``dataset=... model=... attack=... defense=...``: how lines and failure files name the cell."""
        return cell_label(self.names)

    @property
    def record_path(self) -> Path:
        return record_path(self.cfg.results_dir, self.id)

    @property
    def claim_path(self) -> Path:
        return claim_path(self.cfg.results_dir, self.id)

    @property
    def failure_path(self) -> Path:
        return failure_path(self.cfg.results_dir, self.id)

    @cached_property
    def cache(self) -> ModelCache:
        return ModelCache(self.cfg.cache_dir)
