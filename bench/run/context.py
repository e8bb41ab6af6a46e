"""One cell's settings, computed once per run and handed to every step of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from bench.run.cache import ModelCache
from bench.run.host import resolve_device
from bench.run.identity import semantic_config
from bench.run.validation import validate


@dataclass(frozen=True)
class CellContext:
    """The composed config, its semantic (hashed) form, the model cache and the device of one cell."""

    cfg: DictConfig
    sem: dict[str, Any]
    cache: ModelCache
    device: torch.device

    @classmethod
    def of(cls, cfg: DictConfig) -> CellContext:
        """The context of ``cfg``, after checking every key of it (``bench.run.validation``)."""
        validate(cfg)
        return cls(cfg, semantic_config(cfg), ModelCache(cfg.cache_dir), resolve_device(cfg.device))
