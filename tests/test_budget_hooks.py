"""Every optimisation length in the catalogue follows a budget knob, or is listed here with the reason it
does not: a plug-in whose YAML writes a bare ``epochs: 5`` would ignore ``budget.finetune_epochs`` and
``budget.scale`` without a word, and a grid's budget would then be a different one per column. The hooks
(docs/layout.md, "adding an attack or defense"): ``${ft_epochs:N}`` for a fine-tuning phase (or the shared
``/finetune@recipe: sgd``), ``${scaled:N,<defense>}`` for a defense's other lengths, ``${aux_scaled:N}``
for an attack's auxiliary networks, ``${train.epochs}`` for an attack phase that trains like the victim."""

from __future__ import annotations

import re
from typing import Any

import pytest
from omegaconf import OmegaConf

from bench.catalogue import options
from bench.config import compose_config

# a key naming how long something optimises (its last dotted part)
LENGTH = re.compile(r"(^|_)(epochs|iterations|steps|rounds)$")
KNOBS = ["budget.scale=0.5", "budget.finetune_epochs=3", "budget.aux_scale=0.5", "train.epochs=3"]
# (group, option, key): why this length is the method's own and stays whatever the budget says
FIXED = {
    ("defense", "unit", "steps"): "the reference runs all 300 steps; fewer change the bounds (issue 35)",
    ("defense", "unit_attention", "steps"): "UNIT's (above)",
    ("defense", "ibau", "rounds"): "the original's 5 rounds are the whole method (seconds on the CPU)",
    ("defense", "bna", "epochs"): "the fit of the rectifier to histograms (seconds), not of the model",
    ("defense", "seam", "forget.epochs"): "a cap on the forgetting phase's stopping rule (epoch_for)",
    ("defense", "rnp", "unlearn_epochs"): "a cap on the unlearning's stopping rule (acc <= clean_threshold)",
    ("defense", "tsbd", "unlearn_epochs"): "a cap on the unlearning's stopping rule (acc <= unlearn_acc)",
    ("defense", "nc", "epoch_steps"): "batches per reverse-engineering epoch (1,000 / 32), not a length",
    ("defense", "super_ft", "recipe.cycle_steps"): "iterations per half-cycle of the lr: its shape",
    ("attack", "cl", "steps"): "PGD steps of the adversarial perturbation: the attack's strength",
    ("attack", "trojan", "steps"): "the trigger's optimisation against the chosen neurons (the original's)",
    ("attack", "dfst", "detox_epochs"): "the detoxification rounds over the probe set, part of the attack",
}  # fmt: skip


def flat(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def unfollowed_lengths(base: dict[str, Any], knobs_set: dict[str, Any]) -> list[str]:
    """The length keys (whole numbers above 1) whose value the budget knobs did not change."""
    a, b = flat(base), flat(knobs_set)
    return [
        key
        for key, value in a.items()
        if LENGTH.search(key.rsplit(".", 1)[-1]) and type(value) is int and value > 1 and b[key] == value
    ]


def plug_in(group: str, option: str, overrides: list[str]) -> dict[str, Any]:
    cfg = compose_config([f"{group}={option}", *overrides])
    return OmegaConf.to_container(cfg[group], resolve=True)  # type: ignore[return-value]


CATALOGUE = [(group, option) for group in ("attack", "defense") for option in options(group)]


@pytest.mark.parametrize(("group", "option"), CATALOGUE)
def test_every_length_follows_a_budget_knob_or_says_why_not(group: str, option: str) -> None:
    unfollowed = unfollowed_lengths(plug_in(group, option, []), plug_in(group, option, KNOBS))
    unlisted = [key for key in unfollowed if (group, option, key) not in FIXED]
    assert not unlisted, (
        f"{group}={option}: {unlisted} ignore the budget; write them ${{ft_epochs:N}} (a fine-tuning "
        f"phase), ${{scaled:N,{option}}} (a defense's other lengths) or ${{aux_scaled:N}} (an attack's "
        "auxiliary network), or list them in FIXED with the reason"
    )
    stale = [k for (g, o, k) in FIXED if (g, o) == (group, option) and k not in unfollowed]
    assert not stale, f"{group}={option}: FIXED lists {stale}, which now follow the budget or are gone"


def test_a_bare_length_is_caught() -> None:
    """``recipe: {epochs: 1}`` beside a scaled length: the bare one (above 1) is named, the scaled is not,
    and a 1 (nothing to shrink) or a flag is not a length."""
    base = {"recipe": {"epochs": 5, "lr": 0.1}, "steps": 300, "anp_steps": 1, "use_steps": True}
    scaled = {"recipe": {"epochs": 5, "lr": 0.1}, "steps": 150, "anp_steps": 1, "use_steps": True}
    assert unfollowed_lengths(base, scaled) == ["recipe.epochs"]
