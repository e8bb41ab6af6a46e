"""COMBAT: a low-frequency, blurred, bounded trigger; clean labels only; G learns in stage 1 against the
surrogate it alternates with, and is frozen for the victim."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from bench.attacks.combat import COMBAT, GeneratorStep, dct_matrix, gaussian_blur, lowpass_matrix
from bench.core.engine import Recipe
from tests.conftest import bundle, context, tiny_model


def cosine(n: int, k: int) -> torch.Tensor:
    """The k-th DCT-II basis signal of length n, from its definition."""
    return torch.cos(math.pi * (2 * torch.arange(n, dtype=torch.float64) + 1) * k / (2 * n))


def test_lowpass_keeps_the_first_ratio_of_frequencies_and_drops_the_rest() -> None:
    p = lowpass_matrix(32, 0.65)  # the official keeps int(32 * 0.65) = 20 coefficients per axis
    for k in range(32):
        expected = cosine(32, k) if k < 20 else torch.zeros(32, dtype=torch.float64)
        assert torch.allclose(p @ cosine(32, k), expected, atol=1e-9), k
    assert torch.allclose(p @ p, p, atol=1e-9)  # a projection


def test_blur_keeps_a_flat_image_and_smooths_an_edge_more_with_a_larger_sigma() -> None:
    flat = torch.full((2, 3, 8, 8), 0.3)
    assert torch.allclose(gaussian_blur(flat, torch.tensor([0.1, 1.0])), flat, atol=1e-6)
    edge = torch.zeros(2, 1, 8, 8)
    edge[..., 4:] = 1
    out = gaussian_blur(edge, torch.tensor([0.1, 1.0]))
    assert (out[0] - edge[0]).abs().max() < 1e-3  # sigma 0.1: the neighbours weigh ~e^-50
    assert out[1, 0, 0, 3] > 0.2 and out[1, 0, 0, 4] < 0.8  # sigma 1: the edge spreads


def small(**kw: object) -> COMBAT:
    attack = COMBAT(width=4, depth=2, **kw)
    attack.setup(bundle())
    return attack


def test_trigger_is_bounded_low_frequency_noise_before_the_blur() -> None:
    attack = small(noise_rate=0.08)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        added = attack.lowpass_rows @ attack.trigger(2 * x - 1) @ attack.lowpass_cols.T
    d = dct_matrix(32).float()
    spectrum = d @ added @ d.T
    assert spectrum[..., 20:, :].abs().max() < 1e-4 and spectrum[..., :, 20:].abs().max() < 1e-4
    assert spectrum[..., :20, :20].abs().max() > 1e-3
    out = attack.apply(x)
    assert torch.equal(out, attack.apply(x))  # the test-time trigger is the same on every call
    # blur(clip(x + noise_rate / 2 * lowpass(G(2x - 1)))), the sigmas U(0.1, 1) one per image
    sigmas = 0.1 + 0.9 * torch.rand(4, generator=torch.Generator().manual_seed(5))
    expected = gaussian_blur((x + 0.04 * added).clamp(0, 1), sigmas)
    with torch.no_grad():
        assert torch.allclose(attack.trigger_with(x, torch.Generator().manual_seed(5)), expected, atol=1e-5)


def test_poisoning_changes_target_class_images_only_and_no_label() -> None:
    data = bundle(400)
    attack = small(poison_rate=0.05, stage1_epochs=1)
    lent = context(data.train, Recipe(epochs=1, batch_size=64))
    poisoned = attack.poison(data.train, lent)
    assert torch.equal(poisoned.y, data.train.y)
    changed = (poisoned.x != data.train.x).flatten(1).any(1)
    assert (data.train.y[changed] == 0).all() and int(changed.sum()) == round(0.05 * 400)
    assert {"stage1_asr", "clean_model_acc_on_triggered"} <= set(lent.models.facts["combat_generator"])
    assert "clean" in lent.models.requests  # G is trained against the cell's clean model too
    assert not any(p.requires_grad for p in attack.trigger.parameters())


def test_stage1_triggers_a_share_of_target_images_then_steps_the_generator() -> None:
    attack = small()
    attack.trigger.train()
    step = GeneratorStep(attack, tiny_model(), Recipe(epochs=4, batch_size=16), pc=1.0)
    x, y = torch.rand(16, 3, 32, 32), torch.arange(16) % 4
    out, labels = step.batch_hook(tiny_model().train(), x, y)
    assert torch.equal(labels, y)  # clean-label: nothing relabelled
    assert torch.equal(out[y != 0], x[y != 0]) and not torch.equal(out[y == 0], x[y == 0])
    before = [p.detach().clone() for p in attack.trigger.parameters()]
    step.after_step()
    assert any(not torch.equal(b, p) for b, p in zip(before, attack.trigger.parameters(), strict=True))
    assert step.schedule.get_last_lr() == [attack.lr]
    for epoch in range(3):
        step.after_epoch(nn.Identity(), epoch)
    assert step.schedule.get_last_lr() == pytest.approx([attack.lr * 0.01])  # x0.1 at 1/2 and 3/4
