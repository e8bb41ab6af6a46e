"""Behaviour of the seed papers' defenses (TSBD, BNA) and of the STRIP detector."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.core.images import ImageSet, to_float
from bench.defenses import Detector
from bench.defenses._base import DefenderContext
from bench.defenses.bna import BNA, BNARepaired, divergence, soft_histogram
from bench.defenses.strip import STRIP
from bench.defenses.tsbd import (
    TSBD,
    ActivenessAwareLoss,
    neuron_convs,
    neuron_weight_change,
    weight_changes,
    zero_reinit,
)
from bench.run.metrics import detection
from tests.conftest import CPU, NO_EPOCHS, ctx, toy_data, trained_toy_model


def test_tsbd_neurons_are_conv_channels_without_shortcuts() -> None:
    names = [n for n, _ in neuron_convs(trained_toy_model())]
    assert names and not any("shortcut" in n for n in names)
    assert "net.conv1" in names


def test_tsbd_zeroes_the_largest_changes_of_the_chosen_neurons_in_the_original_model() -> None:
    original = trained_toy_model()
    unlearned = copy.deepcopy(original)
    layer = "net.layer2.0.conv1"
    with torch.no_grad():
        w = dict(unlearned.named_modules())[layer].weight
        bump = torch.arange(w[3].numel(), dtype=w.dtype).view_as(w[3]) + 100  # channel 3 moves most
        w[3] += bump
    changes = weight_changes(original, unlearned)
    ranked = neuron_weight_change(changes)
    assert ranked[0][:2] == (layer, 3)
    before = copy.deepcopy(original.state_dict())
    n = 1 / len(ranked)  # exactly the top neuron
    zeroed = zero_reinit(original, changes, ranked, n, m=0.5)
    weight = dict(original.named_modules())[layer].weight
    largest = bump.flatten().topk(zeroed).indices
    assert zeroed == round(0.5 * bump.numel())
    assert (weight[3].flatten()[largest] == 0).all()
    rest = torch.ones(bump.numel(), dtype=torch.bool)
    rest[largest] = False
    assert torch.equal(weight[3].flatten()[rest], before[f"{layer}.weight"][3].flatten()[rest])
    others = [k for k in before if k != f"{layer}.weight"]
    assert all(torch.equal(original.state_dict()[k], before[k]) for k in others)


def test_tsbd_step_direction_is_the_mix_of_the_two_gradients() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    r, a = 0.05, 0.7
    params = list(model.parameters())
    g1 = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        for p, g in zip(shifted.parameters(), g1, strict=True):
            p += r * g / g.norm()
    g2 = torch.autograd.grad(F.cross_entropy(shifted(x), y), list(shifted.parameters()))
    ActivenessAwareLoss(r, a)(model, x, y).backward()
    for p, u, v in zip(params, g1, g2, strict=True):
        assert torch.allclose(p.grad, (1 - a) * u + a * v, atol=1e-6)


def test_tsbd_records_its_choice_of_n_from_defender_data() -> None:
    defense = TSBD(NO_EPOCHS, unlearn_lr=1e-2, unlearn_epochs=5, tolerance=0.05)
    _, info = defense.repair(trained_toy_model(), ctx())
    tried = [row["n"] for row in info["n_sweep"]]
    assert tried == [*sorted(defense.n_grid, reverse=True), 0.0][: len(tried)]  # largest first
    assert info["n"] == tried[-1]
    passed = [row["val_acc"] >= info["val_acc_before"] - 0.05 for row in info["n_sweep"]]
    assert not any(passed[:-1]) and (passed[-1] or info["n"] == 0.0)  # stops at the first that passes
    assert info["unlearn_epochs"] >= 1 and info["nwc_max"] >= info["nwc_median"]


def test_soft_histogram_sums_to_the_sample_count() -> None:
    values = torch.rand(50, 4) * 2 - 1
    edges = torch.arange(-1.5, 1.55, 0.1)
    counts = soft_histogram(values, edges, tau=150)
    assert counts.shape == (4, len(edges) - 1)
    assert torch.allclose(counts.sum(1), torch.full((4,), 50.0), atol=1e-3)
    assert divergence(counts, counts, "tv").item() == pytest.approx(0.0, abs=1e-6)
    other = soft_histogram(values + 0.5, edges, tau=150)
    for kind in ("tv", "js", "kl"):
        assert divergence(counts, other, kind).item() > 0.05


def test_bna_rule_only_touches_inputs_predicted_as_a_detected_target() -> None:
    model = trained_toy_model().eval()
    x = to_float(toy_data(64, seed=3).x)  # all ten classes
    with torch.no_grad():
        f = model(x)
    target = int(f.argmax(1).mode().values)
    repaired = BNARepaired(copy.deepcopy(model), [target]).eval()
    for name, p in repaired.params.items():  # a drastic transform: every BN output squashed to 0
        if name.startswith(("omega", "v")):
            p.data.zero_()
    with torch.no_grad():
        out = repaired(x)
        flags = repaired.detect(x)
    hit = f.argmax(1) == target
    assert hit.any() and (~hit).any()
    assert torch.equal(out[~hit], f[~hit])
    assert not torch.allclose(out[hit], f[hit])
    assert not flags[~hit].any()


def test_bna_with_nothing_detected_keeps_every_output() -> None:
    model = trained_toy_model().eval()
    repaired, info = BNA(steps=2, anomaly_threshold=1e9).repair(copy.deepcopy(model), ctx(100))
    assert info["detected"] == [] and info["action"].startswith("none detected")
    x = torch.rand(20, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(repaired.eval()(x), model(x))
        assert not repaired.detect(x).any()
    assert len(info["pairs"]) == 90


def test_bna_correction_lowers_the_divergence_it_fits() -> None:
    model = trained_toy_model().eval()
    repaired, info = BNA(steps=2, anomaly_threshold=-1e9, epochs=3).repair(model, ctx(100))
    assert len(info["detected"]) == 90  # every pair forced through the correction
    before = sum(row["before"] for row in info["divergence"])
    assert sum(row["after"] for row in info["divergence"]) < before


def test_strip_threshold_gives_its_false_positive_rate_on_defender_data() -> None:
    model = trained_toy_model().eval()
    detector, info = STRIP(n_blends=4, fpr=0.15).repair(model, ctx(200))
    assert info["defender_fpr"] == pytest.approx(0.15, abs=0.05)
    x = torch.rand(10, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(detector(x), model(x))  # detection only
    test = toy_data(100, seed=5)
    rates = detection(detector, test, None, CPU)
    # the threshold chosen on the defender's data flags about its share of clean test images too
    assert set(rates) == {"fpr"} and rates["fpr"] == pytest.approx(100 * info["defender_fpr"], abs=10)
    assert isinstance(detector, Detector) and not isinstance(model, Detector)


def test_strip_flags_a_dominating_trigger() -> None:
    """A model that answers class 0 whenever a bright corner is present: blends keep the corner."""

    class CornerModel(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            corner = x[:, :, :4, :4].mean((1, 2, 3))
            logits = torch.zeros(len(x), 10)  # uniform: the largest entropy, whatever the clean image
            logits[:, 0] += 50 * (corner > 0.45).float()
            return logits

    data = ImageSet(torch.randint(0, 100, (200, 3, 32, 32), dtype=torch.uint8), torch.arange(200) % 10)
    detector, _ = STRIP(n_blends=8).repair(CornerModel(), DefenderContext(data, 10, CPU, 0, False))
    x = torch.rand(20, 3, 32, 32) * 0.4
    x[:10, :, :4, :4] = 1.0
    flags = detector.detect(x)
    assert flags[:10].all() and not flags[10:].any()
