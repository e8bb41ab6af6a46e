"""FT as BackdoorBench runs it (SCLBD/BackdoorBench: ``defense/ft.py``, the UNIT paper's FT baseline) on our
victim, I/O redirected as ``backdoorbench.py`` says.

Its recipe is its own (``config/defense/ft/cifar10.yaml``: SGD momentum 0.9, wd 5e-4, lr 0.01, cosine,
batch 256, crop/flip) at our budget's length; the script also tests both test sets after every epoch, which
is in ``ref_s``.
"""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

from backdoorbench import recipe_config, run_defense
from harness import OfficialResult, ParityVictim
from omegaconf import DictConfig

NAME = "ft"
SETTINGS = {"default": []}


def official_config(cfg: DictConfig, victim: ParityVictim) -> Namespace:
    return recipe_config(cfg)


def run_official(checkout: Path, victim: ParityVictim, args: Namespace) -> OfficialResult:
    return run_defense(checkout, victim, "ft", args)
