"""Every setting is checked before any work (bench.run.validation): the keys under test are found by reading
the schema (each ``_target_``'s annotated signature and ``RunSettings``), so a new key is covered by
existing. A refused value names the key on one line, exits 2 and leaves nothing behind."""

from __future__ import annotations

import copy
import functools
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest
from omegaconf import DictConfig, OmegaConf

from bench.core.errors import SettingError
from bench.core.schema import NON_NEGATIVE, Range
from bench.run.validation import RunSettings, signature_of, validate
from tests.conftest import REPO, compose_cfg, group_options

GROUPS = ("attack", "defense", "model", "dataset", "train")


def checked_kind(hint: Any) -> tuple[str, Any] | None:
    """("number", Range) or ("enum", values) for a hint the validation checks by value; else None."""
    origin = get_origin(hint)
    if origin is Annotated:
        base, *meta = get_args(hint)
        kind = checked_kind(base)
        ranges = [m for m in meta if isinstance(m, Range)]
        return ("number", ranges[0]) if kind and kind[0] == "number" and ranges else kind
    if origin in (Union, __import__("types").UnionType):
        kinds = [checked_kind(a) for a in get_args(hint) if a is not type(None)]
        return kinds[0] if len(kinds) == 1 else None
    if origin is Literal:
        return ("enum", get_args(hint))
    if hint in (int, float):
        return ("number", NON_NEGATIVE)
    return None


def schema_cases() -> list[tuple[str, str, str, str, Any]]:
    """(overrides group=option, dotted key, kind, wrong-type value, out-of-range value) for every checked
    key of every option's target, once per distinct target."""
    cases, seen = [], set()
    for group in GROUPS:
        for option in group_options(group):
            extra = ["model.name=resnet18"] if option == "timm" else []
            cfg, _ = compose_cfg([f"{group}={option}", *extra])
            node = OmegaConf.to_container(cfg[group], resolve=True)
            if node["_target_"] in seen:
                continue
            seen.add(node["_target_"])
            params, hints = signature_of(node["_target_"])
            for key, value in node.items():
                kind = checked_kind(hints.get(key)) if key in params.parameters else None
                if kind is None or isinstance(value, dict):
                    continue
                bad = kind[1].outside() if kind[0] == "number" else "no_such_choice"
                cases.append((f"{group}={option}", f"{group}.{key}", kind[0], "not-a-number", bad))
    hints = get_type_hints(RunSettings, include_extras=True)
    for key, hint in hints.items():
        kind = checked_kind(hint)
        if kind is not None:
            bad = kind[1].outside() if kind[0] == "number" else "no_such_choice"
            cases.append(("attack=badnets", key, kind[0], "not-a-number", bad))
    return cases


CASES = schema_cases()


@functools.cache
def composed(option: str) -> DictConfig:
    """The config of ``python -m bench <option>`` (composed once; each case changes a copy)."""
    return compose_cfg([option])[0]


def test_the_schema_covers_every_plug_in_family() -> None:
    keys = {key for _, key, *_ in CASES}
    for key in ("attack.poison_rate", "defense.eps", "model.width", "dataset.train_size", "train.epochs",
                "defense.schedule", "seed", "defender_ratio", "precision"):  # fmt: skip
        assert key in keys, key
    assert len(CASES) > 150


@pytest.mark.parametrize("value_kind", ["wrong_type", "out_of_range"])
@pytest.mark.parametrize(("option", "key", "kind", "wrong_type", "out_of_range"), CASES,
                         ids=[f"{o}:{k}" for o, k, *_ in CASES])  # fmt: skip
def test_a_wrong_value_is_refused_naming_the_key(
    option: str, key: str, kind: str, wrong_type: str, out_of_range: Any, value_kind: str
) -> None:
    if value_kind == "wrong_type" and kind == "enum":
        pytest.skip("an enum's wrong type is an unknown choice: the other case")
    cfg = copy.deepcopy(composed(option))
    OmegaConf.update(cfg, key, wrong_type if value_kind == "wrong_type" else out_of_range, force_add=True)
    with pytest.raises(SettingError) as err:
        validate(cfg)
    message = str(err.value)
    assert message.startswith(f"{key}=") and "\n" not in message


def test_the_composed_options_are_all_valid() -> None:
    for group in GROUPS:
        for option in group_options(group):
            extra = {"timm": ["model.name=resnet18"], "unit_attention": ["model=vit"]}.get(option, [])
            validate(compose_cfg([f"{group}={option}", *extra])[0])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["defense=unit_attention"], "ResNet has no activation module of type Attention"),
        (["model=vit", "defense=anp"], "VisionTransformer has no BatchNorm2d layer for ANP"),
        (["model=vit", "defense=rnp"], "VisionTransformer has no BatchNorm2d layer"),
    ],
)
def test_a_defense_that_cannot_work_on_the_network_is_refused_before_any_training(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(SettingError, match=f"defense: {message}"):
        validate(compose_cfg(overrides)[0])


def test_unknown_key_and_unwritable_directory_are_refused(tmp_path: Path) -> None:
    cfg, _ = compose_cfg(["attack=badnets", "+attack.poison_rat=0.2"])
    with pytest.raises(SettingError, match=r"attack\.poison_rat is not a setting of .*BadNets"):
        validate(cfg)
    # /proc: permission bits that say yes, even to root, where no folder can be made
    cfg, _ = compose_cfg(["results_dir=/proc/bench/runs"])
    with pytest.raises(SettingError, match="results_dir='/proc/bench/runs' is not writable"):
        validate(cfg)
    cfg, _ = compose_cfg([f"cache_dir={tmp_path}/new/cache"])  # a folder that can be made is fine
    validate(cfg)
    assert not (tmp_path / "new").exists()  # and the check leaves nothing behind


def test_checks_across_keys_run_before_any_data(tmp_path: Path) -> None:
    """A constructor's own check (WaNet: poison_rate * (1 + cross_ratio) <= 1) is a SettingError too."""
    cfg, _ = compose_cfg(["attack=wanet", "attack.poison_rate=0.5", "attack.cross_ratio=2"])
    with pytest.raises(SettingError, match=r"attack: poison_rate \* \(1 \+ cross_ratio\) must be at most 1"):
        validate(cfg)


@pytest.mark.parametrize(
    "override",
    ["attack.poison_rate=abc", "model.width=0", "defense=unit", "train.epochs=-1", "train.epochs=0",
     "device=cuda:x", "+budget.scale_of.anpp=1.0", "attack=badnet", "experiment=smok", "defense.epz=0.01"],
)  # fmt: skip
def test_cli_refuses_one_line_exit_2_and_writes_nothing(tmp_path: Path, override: str) -> None:
    overrides = [override] if override != "defense=unit" else ["defense=unit", "defense.schedule=fast"]
    out = subprocess.run(
        [sys.executable, "-m", "bench", "experiment=smoke", *overrides, f"results_dir={tmp_path}/r",
         f"cache_dir={tmp_path}/c", f"hydra.run.dir={tmp_path}/h"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    key = overrides[-1].split("=")[0].lstrip("+")
    assert len(errors) == 1 and key in errors[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["attack=badnet"], "attack=badnet: no such option (did you mean badnets"),
        (["-m", "attack=badnets,blnd"], "attack=blnd: no such option (did you mean blend"),
        (["defense=unit", "defense.epz=0.01"], "defense.epz is not a setting (did you mean eps?)"),
        (["-m", "defense=unit,ft", "defense.eps=0.01,0.03"], None),  # eps is UNIT's: the first value decides
        (["attack=glob(*)", "defense=none"], None),
        (["--help", "attack=badnet"], None),  # Hydra's help shows the options
        (
            ["hydra/launcher=submitit_slurm", "+hydra/launcher=slurm_cpu", "hydra.launcher.timeout_min=5"],
            None,
        ),
    ],
)
def test_command_line_mistakes_are_one_line(argv: list[str], expected: str | None) -> None:
    from bench.run.command_line import check

    error = check(argv)
    assert (error is None) if expected is None else (error is not None and error.startswith(expected))


def test_scale_of_names_a_defense_and_a_positive_scale() -> None:
    with pytest.raises(SettingError, match=r"budget\.scale_of\.anpp: no defense is named 'anpp'"):
        validate(compose_cfg(["+budget.scale_of.anpp=1.0"])[0])
    with pytest.raises(SettingError, match=r"budget\.scale_of"):
        validate(compose_cfg(["budget.scale_of.anp=-1"])[0])
    validate(compose_cfg(["budget.scale_of.anp=0.5"])[0])
