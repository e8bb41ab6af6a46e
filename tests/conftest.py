"""Shared fixtures: compose the real config tree the way the entry point does, shrunk for tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf, open_dict

from bench.entry import CONF_DIR, GROUPS, compose_config

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parent.parent
FASHION_AVAILABLE = (
    Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists()
    or (REPO / "data" / "fashion_mnist").exists()
)
needs_fashion = pytest.mark.skipif(not FASHION_AVAILABLE, reason="Fashion-MNIST not installed (make data)")


def group_options(group: str) -> list[str]:
    """Every option of a config group: adding a YAML file adds it to the parametrized tests."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def compose_cfg(overrides: list[str]) -> tuple[DictConfig, dict[str, str]]:
    """(config, chosen option per group), exactly as ``python -m bench <overrides>`` would see them."""
    cfg = compose_config(overrides, return_hydra_config=True)
    names = {g: cfg.hydra.runtime.choices[g] for g in GROUPS}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, names


@pytest.fixture
def smoke_cfg(tmp_path: Path) -> Callable[..., tuple[DictConfig, dict[str, str]]]:
    """Compose ``experiment=smoke`` plus overrides, with results and cache under ``tmp_path``."""

    def make(*overrides: str) -> tuple[DictConfig, dict[str, str]]:
        cfg, names = compose_cfg(
            ["experiment=smoke", f"results_dir={tmp_path}/runs", f"cache_dir={tmp_path}/cache", *overrides]
        )
        OmegaConf.set_readonly(cfg, False)
        return cfg, names

    return make
