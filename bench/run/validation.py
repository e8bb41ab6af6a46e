"""Check every key of a composed config before any work: types, ranges, enumerations, unknown keys,
devices and writable directories. A wrong value is one ``ConfigError`` naming the key, the value and
what is allowed; nothing is loaded, trained or written before it.

The types and ranges are the ones the code declares: the signature of each ``_target_`` (plug-in
constructors, model functions, ``Recipe``) with ``bench.core.schema`` ranges, and ``RunSettings`` below
for the top-level keys.
"""

from __future__ import annotations

import inspect
import os
import re
import tempfile
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import torch
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from bench.catalogue import options
from bench.core.engine import Precision
from bench.core.errors import SettingError, config_error
from bench.core.schema import NON_NEGATIVE, OpenFraction, Positive, PositiveInt, Range
from bench.defenses._base import Defense


@dataclass
class Budget:
    finetune_epochs: PositiveInt | None = None
    scale: Positive = 1.0
    scale_of: dict[str, Positive | None] = field(default_factory=dict)
    aux_scale: Positive = 1.0


@dataclass
class RunSettings:
    """The top-level keys of conf/config.yaml (the groups are checked against their ``_target_``)."""

    seed: int = 0
    model_width: Positive = 1.0
    attack_parity: bool = False
    budget: Budget | None = None
    precision: Precision = "auto"
    defender_ratio: OpenFraction = 0.05
    device: str = "auto"
    progress: bool = True
    eval_batch_size: PositiveInt = 1024
    results_dir: str = "results/runs"
    overwrite: bool = False
    dry_run: bool = False
    cache_dir: str = ".cache/models"
    data_dir: str = "data"
    output_root: str = "."


GROUP_KEYS = ("dataset", "model", "attack", "defense", "train", "logger")
WRITABLE_DIRS = ("results_dir", "cache_dir")
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def describe(hint: Any) -> str:
    """What a type hint allows, in words."""
    origin = get_origin(hint)
    if origin is Annotated:
        base, *meta = get_args(hint)
        ranges = [m for m in meta if isinstance(m, Range)]
        return describe(base) + (f" in {ranges[0]}" if ranges else "")
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return f"a mapping of {describe(get_args(hint)[0])} to {describe(get_args(hint)[1])}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def fits(value: Any, hint: Any, rng: Range | None = None) -> bool:
    """Whether ``value`` (as composed by Hydra) satisfies ``hint``; numbers default to >= 0."""
    origin = get_origin(hint)
    if origin is Annotated:
        base, *meta = get_args(hint)
        ranges = [m for m in meta if isinstance(m, Range)]
        return fits(value, base, ranges[0] if ranges else rng)
    if origin in (Union, types.UnionType):
        return any(fits(value, a, rng) for a in get_args(hint))
    if origin is Literal:
        return value in get_args(hint)
    if origin in (list, tuple):
        args = [a for a in get_args(hint) if a is not Ellipsis]
        return isinstance(value, list | tuple) and all(fits(v, args[0] if args else Any) for v in value)
    if origin is dict:
        key_hint, value_hint = get_args(hint)
        return isinstance(value, dict) and all(
            fits(k, key_hint) and fits(v, value_hint) for k, v in value.items()
        )
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        ok_type = isinstance(value, int) if hint is int else isinstance(value, int | float)
        return ok_type and not isinstance(value, bool) and (rng or NON_NEGATIVE).contains(value)
    if hint is str:
        return isinstance(value, str)
    return True  # other types (modules, nested recipes) are checked where they are built


def allowed(hint: Any) -> str:
    """What a setting may be, in words: ``describe`` plus the default range of numbers."""
    numeric = any(h in (int, float) for h in _leaves(hint))
    return describe(hint) + (" (>= 0)" if numeric and "in " not in describe(hint) else "")


def check_value(key: str, value: Any, hint: Any) -> None:
    if not fits(value, hint):
        raise SettingError(f"{key}={value!r} is not allowed: must be {allowed(hint)}")


def _leaves(hint: Any) -> Iterator[Any]:
    if get_origin(hint) in (Annotated, Union, types.UnionType):
        args = get_args(hint)[:1] if get_origin(hint) is Annotated else get_args(hint)
        for a in args:
            yield from _leaves(a)
    else:
        yield hint


def signature_of(target: str) -> tuple[inspect.Signature, dict[str, Any]]:
    """The parameters and resolved type hints of a ``_target_`` (a class's constructor or a function)."""
    try:
        obj: Callable[..., Any] = get_method(target)
    except Exception as exc:
        raise SettingError(f"_target_ {target!r} cannot be imported: {exc}") from None
    func = obj.__init__ if inspect.isclass(obj) else obj
    return inspect.signature(func), get_type_hints(func, include_extras=True)


def check_node(prefix: str, node: dict[str, Any]) -> None:
    """Every key of a ``_target_`` node against the target's signature; nested target nodes too."""
    params, hints = signature_of(node["_target_"])
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.parameters.values())
    for key, value in node.items():
        if key == "_target_":
            continue
        name = f"{prefix}.{key}"
        if isinstance(value, dict) and "_target_" in value:
            check_node(name, value)
        elif key in params.parameters:
            check_value(name, value, hints.get(key, Any))
        elif not open_ended:
            allowed = ", ".join(p for p in params.parameters if p != "self")
            raise SettingError(f"{name} is not a setting of {node['_target_']} (its settings: {allowed})")


def check_writable(key: str, path: str) -> None:
    """``path`` is a writable directory or can be created as one: a folder is made and removed in its
    nearest existing ancestor (permission bits can say yes where the file system says no, as in /proc)."""
    p = Path(path).expanduser().absolute()
    while not p.exists():
        p = p.parent
    try:
        if not p.is_dir():
            raise NotADirectoryError(p)
        os.rmdir(tempfile.mkdtemp(dir=p, prefix=".bench-writable-"))
    except OSError as exc:
        raise SettingError(
            f"{key}={path!r} is not writable ({p} is not a writable directory: {exc.strerror or exc})"
        ) from None


def check_device(name: str) -> None:
    if not DEVICE.fullmatch(name):
        raise SettingError(f"device={name!r} is not allowed: must be auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SettingError(f"device={name} but this machine has no CUDA device; use device=cpu or auto")


def check_scaled_defenses(budget: dict[str, Any]) -> None:
    """``budget.scale_of`` names defenses (conf/defense options): a misspelt name would scale nothing."""
    defenses = options("defense")
    for name in budget.get("scale_of") or {}:
        if name not in defenses:
            raise SettingError(
                f"budget.scale_of.{name}: no defense is named {name!r}; options: {', '.join(defenses)}"
            )


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first key of ``cfg`` whose value the code does not allow."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    hints = get_type_hints(RunSettings, include_extras=True)
    budget_hints = get_type_hints(Budget, include_extras=True)
    for key, hint in hints.items():
        if key == "budget":
            for sub, sub_hint in budget_hints.items():
                if sub in resolved.get("budget", {}):
                    check_value(f"budget.{sub}", resolved["budget"][sub], sub_hint)
        elif key in resolved:
            check_value(key, resolved[key], hint)
    check_scaled_defenses(resolved.get("budget") or {})
    epochs = (resolved.get("train") or {}).get("epochs", 1)
    if isinstance(epochs, int) and epochs < 1:
        untrained = "its record would be an untrained model's"
        raise SettingError(f"train.epochs={epochs} trains no victim ({untrained}): must be >= 1")
    check_device(resolved["device"])
    for key in WRITABLE_DIRS:
        check_writable(key, resolved[key])
    for group in GROUP_KEYS:
        node = resolved.get(group)
        if isinstance(node, dict) and "_target_" in node:
            check_node(group, node)
    check_constructors(cfg)


def check_constructors(cfg: DictConfig) -> None:
    """Build the cheap objects of the cell (no data, no model) so their checks across keys run now; the
    error names the group (a constructor's message names only its own parameters)."""
    builds = {
        "dataset": lambda: instantiate(cfg.dataset, data_dir=cfg.data_dir),
        "attack": lambda: instantiate(cfg.attack, seed=cfg.seed),
        "defense": lambda: instantiate(cfg.defense),
        "train": lambda: instantiate(cfg.train),
    }
    built = {}
    for group, build in builds.items():
        try:
            built[group] = build()
        except Exception as exc:
            cause = config_error(exc)
            if cause is None:
                raise
            raise SettingError(f"{group}: {cause}") from None
    check_architecture(cfg, built["dataset"].num_classes, built["defense"])


def check_architecture(cfg: DictConfig, num_classes: int, defense: Defense) -> None:
    """The defense's ``check_model`` on the cell's network built on the meta device (no memory, no
    weights file read): e.g. ``defense=unit_attention`` with a CNN is refused before the victim trains.
    Defenses without a check of their own build nothing (a timm ViT takes ~0.6 s to build, even on meta)."""
    if type(defense).check_model is Defense.check_model:
        return
    no_weights = {"pretrained": None} if "pretrained" in cfg.model else {}
    with torch.device("meta"):
        model = instantiate(cfg.model, num_classes=num_classes, **no_weights)
    try:
        defense.check_model(model)
    except ValueError as exc:
        raise SettingError(f"defense: {exc}") from None
