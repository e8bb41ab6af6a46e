"""Properties of the generator-based attacks (Dynamic, IA, LIRA, ISSBA, DFST) and their shared U-Net."""

from __future__ import annotations

from typing import TypeVar

import pytest
import torch
import torch.nn as nn

from bench.attacks._generator import UNet, ssim
from bench.attacks.dfst import DFST, sunrise_images
from bench.attacks.dynamic import Dynamic
from bench.attacks.ia import InputAware
from bench.attacks.issba import ISSBA
from bench.attacks.lira import LIRA
from bench.core.engine import Recipe, fit
from bench.core.errors import ConfigError
from bench.core.images import ImageSet
from tests.conftest import bundle, context, tiny_model


def states_equal(a: nn.Module, b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, b[k]) for k, v in a.state_dict().items())


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("size", [28, 32, 33, 96])
def test_unet_keeps_any_image_size_and_output_range(size: int) -> None:
    x = torch.rand(2, 3, size, size)
    assert UNet(3, 1, 4, output="sigmoid")(x).shape == (2, 1, size, size)
    out = UNet(3, 3, 4, output="tanh")(x)
    assert out.shape == x.shape and out.abs().max() <= 1


def test_ssim_is_one_for_identical_images_and_lower_otherwise() -> None:
    x = torch.rand(4, 3, 16, 16)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim(x, (x + 0.2 * torch.randn_like(x)).clamp(0, 1)).item() < 0.9


def test_dynamic_patterns_and_positions_vary_per_image_on_the_grid() -> None:
    attack = Dynamic(size=5)
    attack.setup(bundle())
    x = torch.zeros(64, 3, 32, 32)
    out = attack.apply(x)
    changed = (out != 0).any(1)  # (n, h, w); generated patterns are never exactly 0
    corners, patches = set(), []
    for image, mask in zip(out, changed, strict=True):
        rows, cols = torch.nonzero(mask, as_tuple=True)
        top, left = int(rows.min()), int(cols.min())
        assert top % 5 == 0 and left % 5 == 0 and int(rows.max()) - top == 4 and int(cols.max()) - left == 4
        corners.add((top, left))
        patches.append(image[:, top : top + 5, left : left + 5])
    assert len(corners) > 10  # of 36 grid cells
    assert (patches[0] - patches[1]).abs().max() > 1e-3  # a fresh pattern per image


def test_dynamic_generator_trains_jointly_with_the_classifier() -> None:
    data = bundle(128)
    attack = Dynamic(poison_rate=0.25)
    attack.setup(data)
    start = snapshot(attack.net)
    x, y = torch.rand(8, 3, 32, 32), torch.full((8,), 4)
    out, labels = attack.batch_hook(nn.Identity(), x, y)
    assert labels.tolist() == [0, 0] + [4] * 6 and torch.equal(out[2:], x[2:])
    assert out.requires_grad  # the poisoned images stay attached to G
    fit(tiny_model(), data.train, Recipe(epochs=1, batch_size=32), torch.device("cpu"), hooks=attack,
        progress=False)  # fmt: skip
    assert not states_equal(attack.net, start)


A = TypeVar("A", bound=nn.Module)


def small(cls: type[A], **kw: object) -> A:
    """A generator attack with 4-channel U-Nets, set up on the toy bundle."""
    attack = cls(width=4, **kw)
    attack.setup(bundle())
    return attack


def small_ia(**kw: object) -> InputAware:
    return small(InputAware, **kw)


def test_ia_trigger_depends_on_the_image_it_is_generated_from() -> None:
    attack = small_ia()
    with torch.no_grad():
        attack.mask_net.head[0].bias.fill_(1.0)  # a mask of ones: the whole pattern shows
    x1, x2 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    own, _ = attack.triggered(x1, x1)
    other, _ = attack.triggered(x1, x2)
    assert (own - other).abs().max() > 1e-3


def test_ia_batch_has_backdoor_then_cross_trigger_samples_with_true_labels() -> None:
    attack = small_ia(poison_rate=0.1, cross_rate=0.1)
    x, y = torch.rand(40, 3, 32, 32), torch.arange(40) % 10
    out, labels = attack.batch_hook(nn.Identity(), x, y)
    assert (labels[:4] == 0).all() and torch.equal(labels[4:], y[4:])
    with torch.no_grad():
        cross, _ = attack.triggered(x[4:8], x[36:])  # donors: other images of the batch
        assert torch.allclose(out[4:8], cross, atol=1e-6)
        assert torch.allclose(out[:4], attack.apply(x[:4]), atol=1e-6)
    assert torch.equal(out[8:], x[8:])
    assert any(p.grad is not None for p in attack.pattern_net.parameters())  # the diversity term's gradient
    assert all(p.grad is None for p in attack.mask_net.parameters())  # M is frozen in stage 2


def test_ia_mask_pretraining_reaches_its_density_or_refuses() -> None:
    data = bundle(512)
    attack = small_ia(mask_epochs=15, batch_size=64)
    attack.poison(data.train, context(data.train))
    assert 0.032 / 4 <= attack.info["mask_density"] <= 0.032 * 4
    for bias in (-1.0, 1.0):  # an empty mask (no trigger) and one covering the image
        degenerate = small_ia(mask_epochs=0)
        with torch.no_grad():
            degenerate.mask_net.head[0].bias.fill_(bias)
        with pytest.raises(ConfigError, match="degenerate mask"):
            degenerate.poison(data.train, context(data.train))


def test_lira_stage1_learns_trigger_and_stage2_keeps_it_frozen() -> None:
    data = bundle(128)
    attack = LIRA(width=4, lr=1e-2, stage1_epochs=1)
    attack.setup(data)
    start = snapshot(attack.trigger)
    lent = context(data.train, Recipe(epochs=1, batch_size=32))
    attack.poison(data.train, lent)
    assert not states_equal(attack.trigger, start)
    assert 0 <= lent.models.facts["lira_trigger"]["stage1_asr"] <= 100  # kept with T, for the record
    learnt = snapshot(attack.trigger)
    assert not any(p.requires_grad for p in attack.trigger.parameters())
    x, y = torch.rand(6, 3, 32, 32), torch.full((6,), 3)
    out, labels = attack.batch_hook(nn.Identity(), x, y)
    assert torch.equal(out[:6], x) and torch.equal(out[6:], attack.apply(x))
    assert labels.tolist() == [3] * 6 + [0] * 6 and (out[6:] - x).abs().max() <= 0.01 + 1e-6
    fit(tiny_model(), data.train, Recipe(epochs=1, batch_size=32), torch.device("cpu"), hooks=attack,
        progress=False)  # fmt: skip
    assert states_equal(attack.trigger, learnt)


def test_issba_decoder_reads_the_secret_back_on_held_out_images() -> None:
    data = bundle(600)
    attack = ISSBA(bits=8, steps=300, batch_size=32, lr=3e-3, holdout=100, width=8)
    attack.setup(data)
    poisoned = attack.poison(data.train, context(data.train))
    info = attack.info
    assert info["bit_accuracy"] >= 0.9
    assert info["residual_specificity"] > 0.05  # not one universal perturbation
    assert int((poisoned.y != data.train.y).sum()) == 60
    x = torch.rand(2, 3, 32, 32)
    residual = attack.apply(x) - x
    assert (residual[0] - residual[1]).abs().max() > 1e-3


def test_issba_flags_a_secret_that_cannot_be_read() -> None:
    data = bundle(300)
    attack = ISSBA(bits=8, steps=0, holdout=100, width=4)  # an untrained codec
    attack.setup(data)
    attack.poison(data.train, context(data.train))
    assert attack.info["bit_accuracy"] < 0.9
    (warning,) = attack.info["warnings"]
    assert f"bit accuracy {attack.info['bit_accuracy']:.3f} < attack.bit_accuracy_floor=0.9" in warning


def test_sunrise_scenes_are_warm_images_in_range() -> None:
    scenes = sunrise_images(8, torch.Size((3, 32, 32)), torch.Generator().manual_seed(0))
    assert scenes.shape == (8, 3, 32, 32) and scenes.min() >= 0 and scenes.max() <= 1
    sky = scenes[:, :, :10]
    assert (sky[:, 0].mean() > sky[:, 2].mean()).item()  # red over blue
    grey = sunrise_images(2, torch.Size((1, 32, 32)), torch.Generator().manual_seed(0))
    assert grey.shape == (2, 1, 32, 32)


def test_dfst_style_depends_on_the_image() -> None:
    attack = small(
        DFST,
    )
    x = torch.rand(2, 3, 32, 32)
    residual = attack.apply(x) - x
    assert (residual[0] - residual[1]).abs().max() > 1e-3


def test_dfst_detox_samples_keep_their_true_labels() -> None:
    data = bundle(300)
    attack = small(DFST, poison_rate=0.1, style_steps=2, detox_epochs=1, detox_share=0.2)
    attack.poison(data.train, context(data.train, Recipe(epochs=3)))
    model = tiny_model()
    attack.after_epoch(model, 0)
    assert attack.info["detox_rounds"] == 1 and len(attack.info["compromised_neurons"][0]) >= 1
    x, y = torch.rand(40, 3, 32, 32), torch.arange(40) % 10
    out, labels = attack.batch_hook(model, x, y)
    assert (labels[:4] == 0).all() and torch.equal(labels[4:], y[4:])
    with torch.no_grad():
        detox = 0.4 * x[4:8] + 0.6 * attack.injector(x[4:8])
    assert torch.allclose(out[4:8], detox, atol=1e-6) and torch.equal(out[8:], x[8:])
    attack.after_epoch(model, 2)  # the last epoch: no round, nothing would use its injector
    assert attack.info["detox_rounds"] == 1


@pytest.mark.parametrize("attack", [InputAware(width=4), LIRA(width=4), ISSBA(width=4), DFST(width=4)])
def test_generator_attacks_demand_a_context(attack: nn.Module) -> None:
    data = bundle()
    attack.setup(data)
    with pytest.raises(ValueError, match="AttackContext"):
        attack.poison(ImageSet(data.train.x, data.train.y))
