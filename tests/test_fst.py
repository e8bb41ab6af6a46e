"""FST re-initialises the head, keeps its weight at the backdoored head's norm after every step, and its
penalty moves the head away from the backdoored one (the larger alpha, the lower their cosine)."""

from __future__ import annotations

import torch
import torch.nn as nn

from bench.core.engine import Recipe
from bench.defenses.fst import FST
from tests.conftest import ctx


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))  # fmt: skip


def repaired(alpha: float) -> tuple[nn.Sequential, torch.Tensor, dict]:
    net = small_net()
    original = net[-1].weight.detach().clone()
    recipe = Recipe(epochs=3, batch_size=32, lr=0.01, weight_decay=0.0, crop_pad=0, hflip=False)
    model, info = FST(recipe, alpha=alpha).repair(net, ctx(64))
    return model, original, info


def test_the_head_keeps_its_norm_and_the_penalty_pushes_it_away() -> None:
    model, original, info = repaired(alpha=0.0)
    assert torch.allclose(model[-1].weight.norm(), original.norm(), rtol=1e-5)
    free = info["head_cosine_to_original"]
    _, _, pushed = repaired(alpha=5.0)
    assert pushed["head_cosine_to_original"] < free and pushed["head_cosine_to_original"] < 0
    assert len(info["loss_per_epoch"]) == 3 and info["alpha"] == 0.0


def test_the_head_is_reinitialised_before_tuning() -> None:
    """With no step at all (zero epochs) the head is already a fresh draw, not the backdoored one."""
    net = small_net()
    original = net[-1].weight.detach().clone()
    FST(Recipe(epochs=0, batch_size=32), alpha=0.2).repair(net, ctx(64))
    assert not torch.allclose(net[-1].weight, original)
    assert net[-1].weight.abs().max() <= 1 / 8**0.5  # uniform in +-1/sqrt(in_features)
