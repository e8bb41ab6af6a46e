"""What names a cell and its models: the semantic config (the resolved config minus what cannot change a
result), the cell id (the record's file stem) and the cache keys of victims and auxiliary models.

Every committed record and cached model is addressed by these hashes, so they must not move when code
does: keys added later and classes moved later are hashed as they were when the first records were made
(``LATER_KEYS``, ``MOVED_MODULES``); ``tests/test_records.py`` proves it on the committed records.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.run.cache import cache_key

GROUPS = ("dataset", "model", "attack", "defense")
# What conf/attack/none.yaml composes to: the clean model of a row shares the victims' cache.
CLEAN_ATTACK = {"_target_": "bench.attacks.none.NoAttack"}
# Keys that change where or how a cell runs, never its result.
RUN_ONLY_KEYS = (
    "results_dir", "cache_dir", "data_dir", "logger", "device", "progress", "eval_batch_size", "overwrite",
    "dry_run", "output_root",
)  # fmt: skip
# Keys whose value reaches the hash through the keys that read them (model_width: every model.width).
DERIVED_KEYS = ("model_width",)
# Keys added after records were committed, with the value every earlier record ran with: at that value a
# key stays out of the hash, so earlier cell ids and cache keys remain valid.
LATER_KEYS = {
    "precision": "auto", "train.label_smoothing": 0.0, "budget.scale_of": {}, "attack.trigger_file": False,
    "attack.poisoning": "fixed_subset", "attack.pattern": "noise", "attack.style": "procedural",
}  # fmt: skip
DATA_ACCESS_KEYS = ("root", "download")
# What a trained model depends on besides its attack (or auxiliary spec): the row's clean model shares them.
MODEL_KEYS = ("dataset", "model", "train", "seed", "precision")
# Packages moved after records were committed (the plug-in families into bench/, the engine into the
# ground package): a ``_target_`` is hashed under the module path it had then.
MOVED_MODULES = {
    "bench.core.engine.": "bench.engine.",
    "bench.attacks.": "attacks.",
    "bench.defenses.": "defenses.",
    "bench.datasets.": "datasets.",
    "bench.models.": "models.",
}


def container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def hashed_target(target: str) -> str:
    """The module path a ``_target_`` is hashed under (its path before ``MOVED_MODULES``)."""
    for new, old in MOVED_MODULES.items():
        if target.startswith(new):
            return old + target[len(new) :]
    return target


def hashed_targets(node: Any) -> Any:
    """``node`` with every ``_target_`` value replaced by ``hashed_target`` (idempotent)."""
    if isinstance(node, dict):
        return {k: hashed_target(v) if k == "_target_" and isinstance(v, str) else hashed_targets(v)
                for k, v in node.items()}  # fmt: skip
    if isinstance(node, list):
        return [hashed_targets(v) for v in node]
    return node


def later_key_slots(config: dict[str, Any], create: bool) -> Iterator[tuple[dict[str, Any], str, Any]]:
    """For each ``LATER_KEYS`` entry: the dict of ``config`` that holds it, its last key and its default
    (``create`` adds missing parent dicts to ``config``; without it a detached empty dict stands in)."""
    for dotted, default in LATER_KEYS.items():
        *parents, key = dotted.split(".")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {}) if create else (node.get(parent) or {})
        yield node, key, default


def filled_later_keys(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a record's config with every key added after it ran at the value it ran with."""
    config = copy.deepcopy(config)
    for node, key, default in later_key_slots(config, create=True):
        node.setdefault(key, default)
    return config


def semantic_config(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """The resolved config minus keys that cannot change the result (paths, logging, device), in the form
    it is hashed in."""
    out = {k: v for k, v in container(cfg).items() if k not in (*RUN_ONLY_KEYS, *DERIVED_KEYS)}
    scale_of = (out.get("budget") or {}).get("scale_of")
    if isinstance(scale_of, dict):  # a defense at null follows budget.scale: as if it were not listed
        out["budget"]["scale_of"] = {k: v for k, v in scale_of.items() if v is not None}
    for node, key, default in later_key_slots(out, create=False):
        if key in node and node[key] == default:
            del node[key]
    out["dataset"] = {k: v for k, v in out["dataset"].items() if k not in DATA_ACCESS_KEYS}
    return hashed_targets(out)


def model_key(sem: dict[str, Any], **extra: Any) -> str:
    """Cache key of a model trained for this cell's dataset, architecture, recipe and seed, plus ``extra``
    (the attack for victims; the name and spec of an auxiliary model)."""
    picked = {k: sem[k] for k in MODEL_KEYS if k in sem}
    return cache_key({**picked, **hashed_targets(extra)})


def victim_key(sem: dict[str, Any], attack: dict[str, Any]) -> str:
    """Everything that determines the backdoored model: dataset, model, attack, recipe, seed."""
    return model_key(sem, attack=attack)


def cell_label(names: dict[str, str]) -> str:
    """``dataset=... model=... attack=... defense=...``: how lines and failure files name a cell."""
    return " ".join(f"{g}={names[g]}" for g in GROUPS)


def is_clean(sem: dict[str, Any]) -> bool:
    """Whether the cell's attack is ``attack=none`` (its victim is the clean model of the row)."""
    return sem["attack"] == hashed_targets(CLEAN_ATTACK)


def cell_id(names: dict[str, str], sem: dict[str, Any]) -> str:
    """A readable, unique file stem for a cell; the hash separates variants and overrides."""
    parts = [names[g] for g in GROUPS]
    return "__".join([*parts, f"s{sem['seed']}", cache_key(sem)[:10]])
