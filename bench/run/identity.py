"""What names a cell and its models: the semantic config (the resolved config minus what cannot change a
result), the cell id (the record's file stem) and the cache keys of victims and auxiliary models.

Every committed record and cached model is addressed by these hashes, so they must not move when code
does: keys added later are hashed as they were when the first records were made (``LATER_KEYS``), each
plug-in under its stable name, never its module path (``HASHED_AS``); ``tests/test_records.py`` proves it
on the committed records.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.core.files import sha256_file
from bench.run.cache import cache_key

GROUPS = ("dataset", "model", "attack", "defense")
# What conf/attack/none.yaml composes to: the clean model of a row shares the victims' cache.
CLEAN_ATTACK = {"_target_": "bench.attacks.none.NoAttack"}
# Keys that change where or how a cell runs, never its result.
RUN_ONLY_KEYS = (
    "results_dir", "cache_dir", "data_dir", "logger", "device", "progress", "eval_batch_size", "overwrite",
    "dry_run", "output_root",
)  # fmt: skip
# Plug-in settings of the same kind: how a defense groups its work, never what it computes.
RUN_ONLY_DEFENSE_KEYS = ("images_per_pass",)
# Keys whose value reaches the hash through the keys that read them (model_width: every model.width;
# attack_parity: the attack keys written ${parity:...}).
DERIVED_KEYS = ("model_width", "attack_parity")
# Keys added after records were committed, with the value every earlier record ran with: at that value a
# key stays out of the hash, so earlier cell ids and cache keys remain valid.
LATER_KEYS = {
    "precision": "auto", "train.label_smoothing": 0.0, "budget.scale_of": {}, "attack.trigger_file": False,
    "attack.poisoning": "fixed_subset", "attack.pattern": "noise", "attack.style": "procedural",
    "model.pretrained": None, "defense.gradient": "fp32",
}  # fmt: skip
DATA_ACCESS_KEYS = ("root", "download")
# What a trained model depends on besides its attack (or auxiliary spec): the row's clean model shares them.
MODEL_KEYS = ("dataset", "model", "train", "seed", "precision")
DATA_MODEL_KEYS = ("dataset", "seed")  # an auxiliary network that never sees a classifier
# Every plug-in is hashed under its stable name (config group and option, ``attack/badnets``), never under
# its module path, so moving or renaming its class changes no id. The plug-ins that existed when records
# were first committed are hashed under the module path they had then (this one table, for those
# records); a plug-in added later is hashed under its name.
HASHED_AS = {
    "dataset/cifar10": "datasets.cifar.CIFAR10", "dataset/cifar100": "datasets.cifar.CIFAR100",
    "dataset/fashion_mnist": "datasets.fashion_mnist.FashionMNIST", "dataset/gtsrb": "datasets.gtsrb.GTSRB",
    "dataset/stl10": "datasets.stl10.STL10",
    "model/densenet": "models.densenet.densenet121", "model/mobilenet": "models.mobilenet.mobilenet",
    "model/preact_resnet18": "models.preact_resnet.preact_resnet18",
    "model/preact_resnet34": "models.preact_resnet.preact_resnet34",
    "model/resnet18": "models.resnet.resnet18", "model/resnet34": "models.resnet.resnet34",
    "model/timm": "models.timm_model.timm_model", "model/vgg11": "models.vgg.vgg11",
    "model/vit": "models.timm_model.timm_model", "model/wideresnet": "models.wideresnet.WideResNet",
    "attack/adap_blend": "attacks.adap_blend.AdaptiveBlend", "attack/badnets": "attacks.badnets.BadNets",
    "attack/blend": "attacks.blend.Blend", "attack/cl": "attacks.cl.LabelConsistent",
    "attack/dfst": "attacks.dfst.DFST", "attack/dynamic": "attacks.dynamic.Dynamic",
    "attack/ia": "attacks.ia.InputAware", "attack/instagram": "attacks.instagram.Instagram",
    "attack/issba": "attacks.issba.ISSBA", "attack/lira": "attacks.lira.LIRA",
    "attack/none": "attacks.none.NoAttack", "attack/reflection": "attacks.reflection.Reflection",
    "attack/sig": "attacks.sig.SIG", "attack/trojan": "attacks.trojan.Trojan",
    "attack/wanet": "attacks.wanet.WaNet",
    "defense/anp": "defenses.anp.ANP", "defense/bna": "defenses.bna.BNA",
    "defense/clip_uniform": "defenses.clip_uniform.UniformClip", "defense/clp": "defenses.clp.CLP",
    "defense/fp": "defenses.fp.FinePruning", "defense/fst": "defenses.fst.FST",
    "defense/ft": "defenses.ft.FineTune", "defense/ft_sam": "defenses.ft.FineTune",
    "defense/ibau": "defenses.ibau.IBAU", "defense/nad": "defenses.nad.NAD",
    "defense/nc": "defenses.nc.NeuralCleanse", "defense/none": "defenses.none.NoDefense",
    "defense/rnp": "defenses.rnp.RNP", "defense/seam": "defenses.seam.SEAM",
    "defense/strip": "defenses.strip.STRIP", "defense/tsbd": "defenses.tsbd.TSBD",
    "defense/unit": "defenses.unit.UNIT",
}  # fmt: skip
# Classes other than plug-ins (the recipes) moved after records were committed: hashed under their old path.
MOVED_MODULES = {"bench.core.engine.": "bench.engine."}


def plugin_identity(group: str, name: str) -> str:
    """What a plug-in's ``_target_`` is hashed as: its old module path for those in ``HASHED_AS``, else
    ``group/name``."""
    return HASHED_AS.get(f"{group}/{name}", f"{group}/{name}")


# The clean model of a row: ``attack=none`` as it is hashed.
CLEAN = {"_target_": plugin_identity("attack", "none")}


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


def semantic_config(cfg: DictConfig | dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The resolved config minus keys that cannot change the result (paths, logging, device), in the form
    it is hashed in: each plug-in under its stable name (``names``: the option of each group)."""
    out = {k: v for k, v in container(cfg).items() if k not in (*RUN_ONLY_KEYS, *DERIVED_KEYS)}
    for group in GROUPS:
        out[group] = {**out[group], "_target_": plugin_identity(group, names[group])}
    scale_of = (out.get("budget") or {}).get("scale_of")
    if isinstance(scale_of, dict):  # a defense at null follows budget.scale: as if it were not listed
        out["budget"]["scale_of"] = {k: v for k, v in scale_of.items() if v is not None}
    for node, key, default in later_key_slots(out, create=False):
        if key in node and node[key] == default:
            del node[key]
    out["dataset"] = {k: v for k, v in out["dataset"].items() if k not in DATA_ACCESS_KEYS}
    out["defense"] = {k: v for k, v in out["defense"].items() if k not in RUN_ONLY_DEFENSE_KEYS}
    if out["model"].get("pretrained"):
        out["model"]["pretrained"] = weights_identity(str(out["model"]["pretrained"]))
    return hashed_targets(out)


def weights_identity(path: str) -> str:
    """``model.pretrained`` as hashed: the file's SHA-256, so other weights at the same path are another
    cell and the same weights at another path the same one (a missing file keeps its path: the model
    builder names it in its error)."""
    file = Path(path).expanduser()
    if not file.is_file():
        return path
    stat = file.stat()
    return f"sha256:{file_digest(str(file.resolve()), stat.st_mtime_ns, stat.st_size)}"


@functools.lru_cache(maxsize=16)
def file_digest(path: str, mtime_ns: int, size: int) -> str:
    """``sha256_file`` once per file version (a sweep composes every cell; ViT weights are ~330 MB)."""
    return sha256_file(Path(path))


def model_key(sem: dict[str, Any], **extra: Any) -> str:
    """Cache key of a model trained for this cell's dataset, architecture, recipe and seed, plus ``extra``
    (the attack for victims; the name and spec of an auxiliary model)."""
    picked = {k: sem[k] for k in MODEL_KEYS if k in sem}
    return cache_key({**picked, **hashed_targets(extra)})


def data_model_key(sem: dict[str, Any], **extra: Any) -> str:
    """Cache key of a network trained on this cell's data alone (no classifier, no recipe), plus ``extra``:
    one training shared by every architecture and recipe of the dataset and seed."""
    return cache_key({k: sem[k] for k in DATA_MODEL_KEYS if k in sem} | hashed_targets(extra))


def victim_key(sem: dict[str, Any], attack: dict[str, Any]) -> str:
    """Everything that determines the backdoored model: dataset, model, attack, recipe, seed."""
    return model_key(sem, attack=attack)


def cell_label(names: dict[str, str]) -> str:
    """``dataset=... model=... attack=... defense=...``: how lines and failure files name a cell."""
    return " ".join(f"{g}={names[g]}" for g in GROUPS)


def is_clean(sem: dict[str, Any]) -> bool:
    """Whether the cell's attack is ``attack=none`` (its victim is the clean model of the row)."""
    return sem["attack"] == CLEAN


def cell_id(names: dict[str, str], sem: dict[str, Any]) -> str:
    """A readable, unique file stem for a cell; the hash separates variants and overrides."""
    parts = [names[g] for g in GROUPS]
    return "__".join([*parts, f"s{sem['seed']}", cache_key(sem)[:10]])
