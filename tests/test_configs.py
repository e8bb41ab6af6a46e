"""Every option of every config group composes and instantiates; bad input fails clearly."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class, get_method, instantiate
from omegaconf import OmegaConf

from bench.attacks import Attack
from bench.defenses import Defense
from bench.run.identity import CLEAN_ATTACK, semantic_config
from tests.conftest import REPO, compose_cfg, group_options, is_timm


@pytest.mark.parametrize("group", ["dataset", "model", "attack", "defense", "train", "logger", "experiment"])
def test_group_has_options(group: str) -> None:
    assert group_options(group)


@pytest.mark.parametrize("group", ["dataset", "model", "attack", "defense"])
def test_every_target_resolves(group: str) -> None:
    for name in group_options(group):
        cfg, names = compose_cfg([f"{group}={name}"])
        assert names[group] == name
        target = cfg[group]["_target_"]
        resolved = get_class(target) if target.split(".")[-1][0].isupper() else get_method(target)
        assert callable(resolved)


@pytest.mark.parametrize("name", group_options("attack"))
def test_attack_instantiates(name: str) -> None:
    cfg, _ = compose_cfg([f"attack={name}"])
    assert isinstance(instantiate(cfg.attack, seed=0), Attack)


@pytest.mark.parametrize("name", group_options("defense"))
def test_defense_instantiates(name: str) -> None:
    cfg, _ = compose_cfg([f"defense={name}"])
    assert isinstance(instantiate(cfg.defense), Defense)


@pytest.mark.parametrize("name", group_options("model"))
def test_model_instantiates_and_runs(name: str) -> None:
    cfg, _ = compose_cfg([f"model={name}", "model.width=0.125"] if not is_timm(name) else [f"model={name}"])
    model = instantiate(cfg.model, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize("name", group_options("experiment"))
def test_experiment_composes_with_group_overrides(name: str) -> None:
    cfg, names = compose_cfg([f"experiment={name}", "model=vgg11", "attack=blend"])
    assert names["model"] == "vgg11" and names["attack"] == "blend"
    assert cfg.model._target_ == "bench.models.vgg.vgg11"


def test_defaults_follow_table1_setting() -> None:
    cfg, names = compose_cfg([])
    assert names["dataset"] == "cifar10" and names["model"] == "resnet18"
    assert cfg.defender_ratio == 0.05 and cfg.attack.target == 0


def test_clean_attack_constant_matches_none_yaml() -> None:
    cfg, _ = compose_cfg(["attack=none"])
    assert OmegaConf.to_container(cfg.attack) == CLEAN_ATTACK


@pytest.mark.parametrize(
    ("override", "match"),
    [("attack=fgsmm", "Could not find 'attack/fgsmm'"), ("defense=nope", "Could not find 'defense/nope'"),
     ("model=resnet99", "Could not find 'model/resnet99'"), ("dataset=imagenet", "Could not find")],
)  # fmt: skip
def test_unknown_option_lists_choices(override: str, match: str) -> None:
    with pytest.raises(ConfigCompositionException, match=match):
        compose_cfg([override])


def test_misspelled_key_is_rejected() -> None:
    with pytest.raises(ConfigCompositionException, match="attack.poison_ratee"):
        compose_cfg(["attack.poison_ratee=0.1"])


# interpolations that only scale a literal (and give it back at the default budget); others (e.g.
# ``${train.epochs}``) tie a key to another group and have no literal to compare
BUDGET_RESOLVERS = ("${scaled:", "${aux_scaled:", "${ft_epochs:")


@pytest.mark.parametrize(("group", "name"), [(g, n) for g in ("attack", "defense") for n in group_options(g)])
def test_yaml_values_equal_the_constructor_defaults(group: str, name: str) -> None:
    """A default written in the YAML and again in ``__init__`` must agree (the YAML is what runs; the
    constructor's default is what a user of the class in Python gets)."""
    cfg, _ = compose_cfg([f"{group}={name}"])  # the paper setting: budget.scale 1, no shared epochs
    raw = OmegaConf.to_container(cfg[group], resolve=False)
    resolved = OmegaConf.to_container(cfg[group], resolve=True)
    params = inspect.signature(get_class(resolved["_target_"]).__init__).parameters
    # a variant of a sibling option (its defaults list names one) sets its own keys apart on purpose
    own = OmegaConf.load(REPO / "conf" / group / f"{name}.yaml")
    variant = any(isinstance(d, str) and "/" not in d and d != "_self_" for d in own.get("defaults", []))
    differ = {}
    for key, value in resolved.items():
        param = params.get(key)
        if param is None or param.default is inspect.Parameter.empty or isinstance(value, dict):
            continue
        if variant and key in own:
            continue
        text = raw[key]
        if isinstance(text, str) and text.startswith("${") and not text.startswith(BUDGET_RESOLVERS):
            continue
        default = list(param.default) if isinstance(param.default, tuple) else param.default
        if default != value:
            differ[key] = (value, default)
    assert not differ, f"{group}={name}: key: (YAML, __init__) {differ}"


def test_help_describes_every_option_of_every_group() -> None:
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0
    for group in ("attack", "defense", "model", "dataset", "experiment"):
        for name in group_options(group):
            line = next(li for li in out.stdout.splitlines() if li.split()[:1] == [name])
            assert not line.split(None, 1)[1].startswith("bench."), f"{group}={name} has no description"


def test_attack_parity_switches_every_attack_to_the_authors_triggers_and_injection() -> None:
    """``attack_parity=true`` sets each attack's keys as the UNIT authors ran them; false leaves the configs,
    and so the committed records' ids, as they were (the key itself is not hashed)."""
    expected = {
        "badnets": {"trigger_file": True, "poisoning": "in_batch"},
        "blend": {"trigger_file": True, "poisoning": "in_batch"},
        "sig": {"trigger_file": True, "poisoning": "in_batch"},
        "wanet": {"trigger_file": True},
        "reflection": {"source": "file", "poisoning": "in_batch"},
        "instagram": {"poisoning": "in_batch"},
        "dfst": {"style": "sunrise"},
        "adap_blend": {"pattern": "photo"},
    }
    for attack, keys in expected.items():
        before, names = compose_cfg([f"attack={attack}"])
        after, _ = compose_cfg([f"attack={attack}", "attack_parity=true"])
        assert {k: after.attack[k] for k in keys} == keys
        assert {k: before.attack[k] for k in keys} != keys
        assert semantic_config(before, names) == semantic_config(
            compose_cfg([f"attack={attack}", "attack_parity=false"])[0], names
        )


def test_search_pass_size_is_not_part_of_a_cells_identity() -> None:
    """``defense.images_per_pass`` groups NC's and BNA's searches into passes without changing any (see
    tests/test_reverse.py), so a cell run at another pass size is the same cell, like ``eval_batch_size``."""
    for defense in ("nc", "bna"):
        default, names = compose_cfg([f"defense={defense}"])
        other, _ = compose_cfg([f"defense={defense}", "defense.images_per_pass=64"])
        assert default.defense.images_per_pass is None and other.defense.images_per_pass == 64
        assert semantic_config(default, names) == semantic_config(other, names)
    steps, names = compose_cfg(["defense=nc", "defense.steps=7"])
    assert semantic_config(steps, names) != semantic_config(compose_cfg(["defense=nc"])[0], names)
