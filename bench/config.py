"""Config arithmetic, beside the catalogue: the budget resolvers every plug-in YAML writes its lengths
with (``${scaled:N,<defense>}``, ``${ft_epochs:N}``, ``${aux_scaled:N}``), the attacks' ``${parity:A,B}``,
the help catalogue's resolver,
and ``compose_config``, the config ``python -m bench <overrides>`` would run. Importing this module
registers the resolvers; scripts and tests compose configs from here without the command-line module."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from bench.catalogue import CONF_DIR, catalogue


def scaled_steps(steps: int, name: str | None = None, *, _root_: DictConfig) -> int:
    """``${scaled:N}``: a defense's optimisation length N times ``budget.scale`` (at least 1), so one key
    shrinks every defense's iterations alike (the ``cpu`` and ``smoke`` experiments set it).
    ``${scaled:N,name}`` takes ``budget.scale_of[name]`` instead where an experiment sets one (a defense
    that only works at its original length keeps it while the others shrink)."""
    scale = (_root_.budget.get("scale_of") or {}).get(name) or _root_.budget.scale
    return max(1, round(steps * float(scale)))


def aux_scaled_steps(steps: int, *, _root_: DictConfig) -> int:
    """``${aux_scaled:N}``: an attack's auxiliary-network training length N times ``budget.aux_scale``
    (which follows ``budget.scale`` unless set), so a grid can shrink the defenses and keep its victims."""
    return max(1, round(steps * float(_root_.budget.aux_scale)))


def finetune_epochs(epochs: int, *, _root_: DictConfig) -> int:
    """``${ft_epochs:N}``: a fine-tuning phase's epochs, N as its original recipe runs it, unless
    ``budget.finetune_epochs`` is set: then every fine-tuning phase of every defense runs that many (the
    CPU settings shrink them all alike)."""
    shared = _root_.budget.finetune_epochs
    return int(epochs if shared is None else shared)


def parity_choice(as_they_ran: object, before: object, *, _root_: DictConfig) -> object:
    """``${parity:A,B}``: an attack setting as the UNIT authors' code runs it (A) when ``attack_parity`` is
    set, else the suite's earlier choice (B), so one key switches every attack's triggers and injection."""
    return as_they_ran if _root_.get("attack_parity", False) else before


OmegaConf.register_new_resolver("scaled", scaled_steps, replace=True)
OmegaConf.register_new_resolver("parity", parity_choice, replace=True)
OmegaConf.register_new_resolver("ft_epochs", finetune_epochs, replace=True)
OmegaConf.register_new_resolver("aux_scaled", aux_scaled_steps, replace=True)
OmegaConf.register_new_resolver("catalogue", catalogue, replace=True)


def compose_config(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """The config ``python -m bench <overrides>`` would run, for scripts and tests."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("config", overrides=overrides, return_hydra_config=return_hydra_config)
