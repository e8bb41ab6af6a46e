"""Properties of every attack's trigger and poisoning, on a toy dataset (no training)."""

from __future__ import annotations

import math

import numpy as np
import pilgram
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hydra.utils import instantiate
from PIL import Image

from bench.attacks import Attack
from bench.attacks.adap_blend import AdaptiveBlend
from bench.attacks.cl import LabelConsistent
from bench.attacks.instagram import Instagram
from bench.attacks.reflection import PHOTOS, Reflection
from bench.attacks.sig import SIG
from bench.attacks.trojan import Trojan
from bench.attacks.wanet import WaNet
from bench.core.errors import SettingError
from bench.core.images import DataBundle, ImageSet, quantize, to_float
from bench.run.validation import validate
from tests.conftest import bundle, compose_cfg, context, group_options, tiny_model

TRIGGERED = [a for a in group_options("attack") if a != "none"]


def built(name: str, *overrides: str) -> Attack:
    cfg, _ = compose_cfg([f"attack={name}", *overrides])
    attack = instantiate(cfg.attack, seed=3)
    attack.setup(bundle())
    return attack


# triggers that exist only once poisoning has optimised them (NARCISSUS starts from zero, as the official)
OPTIMISED_IN_POISONING = ("narcissus",)


@pytest.mark.parametrize("name", TRIGGERED)
def test_trigger_keeps_shape_range_and_changes_images(name: str) -> None:
    attack = built(name)
    x = torch.rand(6, 3, 32, 32) * 0.8 + 0.1
    out = attack.apply(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    if name in OPTIMISED_IN_POISONING:
        assert torch.equal(out, x)
    else:
        assert (out - x).abs().amax((1, 2, 3)).min() > 1e-3  # every image carries a trigger
    stored = attack.apply_uint8(quantize(x))
    assert stored.dtype == torch.uint8 and stored.shape == x.shape


@pytest.mark.parametrize("name", TRIGGERED)
def test_same_seed_same_trigger(name: str) -> None:
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(built(name).apply(x), built(name).apply(x))


def test_sig_adds_exactly_delta_sine_along_columns() -> None:
    attack = SIG(delta=20, frequency=6)
    attack.setup(bundle())
    x = torch.full((2, 3, 32, 32), 0.5)
    diff = attack.apply(x) - x
    expected = 20 / 255 * torch.sin(2 * math.pi * torch.arange(32) * 6 / 32)
    assert torch.allclose(diff, expected.expand_as(diff), atol=1e-6)
    assert torch.equal(diff[:, :, 0], diff[:, :, 17])  # constant down each column


@pytest.mark.parametrize(
    "attack", [SIG(), Reflection(), Reflection(variant="paper"), LabelConsistent(steps=2)]
)
def test_clean_label_attacks_never_relabel(attack: Attack) -> None:
    data = bundle(300)
    attack.setup(data)
    poisoned = attack.poison(data.train, context())
    assert torch.equal(poisoned.y, data.train.y)
    changed = (poisoned.x != data.train.x).flatten(1).any(1)
    assert changed.sum() > 0 and (data.train.y[changed] == attack.target).all()


def test_cl_perturbs_within_eps_before_stamping_the_corners() -> None:
    data = bundle(300)
    attack = LabelConsistent(eps=8, step=2, steps=3)
    attack.setup(data)
    ctx = context()
    poisoned = attack.poison(data.train, ctx)
    assert ctx.models.requests == ["fgsm_rs"]
    changed = (poisoned.x != data.train.x).flatten(1).any(1)
    inside = (1 - attack.mask).bool().expand(int(changed.sum()), 3, -1, -1)
    diff = (poisoned.x[changed].int() - data.train.x[changed].int())[inside]
    assert diff.abs().max() <= 9 and diff.abs().max() >= 1  # 8/255 plus rounding, and not zero
    corners = poisoned.x[changed][:, :, :3, :3].float() / 255
    assert torch.equal(corners, attack.pattern[:, :, :3, :3].expand_as(corners))


def test_wanet_displacement_bounded_and_grid_order() -> None:
    attack = WaNet(k=4, s=0.5)
    attack.setup(bundle())
    shift = attack.grid - attack.identity_grid
    bound = 0.5 * attack.noise_grid.abs().max() / 32  # s * max|noise| / H, in grid units
    assert 0 < shift.abs().max() <= bound + 1e-6
    # grid[..., 0] moves along columns: the identity grid reproduces the image exactly
    x = torch.rand(2, 3, 32, 32)
    identity = torch.nn.functional.grid_sample(
        x, attack.identity_grid.expand(2, -1, -1, -1), align_corners=True
    )
    assert torch.allclose(identity, x, atol=1e-5)


def test_wanet_noise_mode_differs_per_sample_and_keeps_labels() -> None:
    attack = WaNet(target=0, poison_rate=0.1, cross_ratio=2)
    attack.setup(bundle())
    x = torch.rand(1, 3, 32, 32).expand(100, -1, -1, -1).clone()
    y = torch.full((100,), 5)
    out, labels = attack.batch_hook(nn.Identity(), x, y)
    assert (labels[:10] == 0).all() and (labels[10:] == 5).all()
    assert torch.allclose(out[:10], attack.apply(x[:1]).expand(10, -1, -1, -1), atol=1e-6)
    noise = out[10:30]
    assert (noise[0] - noise[1]).abs().max() > 1e-3  # fresh noise per sample
    assert not torch.allclose(noise[0], out[0])  # and not the trigger warp itself
    assert torch.equal(out[30:], x[30:])


def test_adap_blend_poison_and_cover_sets_are_disjoint() -> None:
    data = bundle(2000)
    attack = AdaptiveBlend(poison_rate=0.01, cover_rate=0.01, seed=1)
    attack.setup(data)
    poisoned = attack.poison(data.train)
    changed = (poisoned.x != data.train.x).flatten(1).any(1)
    relabelled = poisoned.y != data.train.y
    assert int(changed.sum()) == 40 and int(relabelled.sum()) == 20
    assert (poisoned.y[relabelled] == attack.target).all()
    cover = changed & ~relabelled
    assert int(cover.sum()) == 20 and not (cover & relabelled).any()


def test_adap_blend_trains_on_partial_weaker_trigger_tests_on_full() -> None:
    attack = AdaptiveBlend(grid=4, keep=8, train_alpha=0.15, test_alpha=0.2)
    attack.setup(bundle())
    masks = attack.piece_masks(50, 32, 32, torch.Generator().manual_seed(0))
    assert torch.all(masks.sum((1, 2, 3)) == 8 * 64)  # 8 of 16 cells of 8x8 pixels
    assert len({tuple(m.flatten().tolist()) for m in masks[:, 0, ::8, ::8]}) > 1  # pieces vary
    x = torch.zeros(1, 3, 32, 32)
    assert torch.allclose(attack.apply(x), 0.2 * attack.pattern)


def test_instagram_is_a_pointwise_colour_map_equal_to_pilgram() -> None:
    attack = Instagram()
    attack.setup(bundle())
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    out = attack.filter_uint8(x)
    direct = np.asarray(pilgram.nashville(Image.fromarray(x[0].permute(1, 2, 0).numpy())))
    assert np.array_equal(out[0].permute(1, 2, 0).numpy(), direct)
    perm = torch.randperm(32 * 32)
    shuffled = x.flatten(2)[:, :, perm].view_as(x)
    assert torch.equal(attack.filter_uint8(shuffled), out.flatten(2)[:, :, perm].view_as(out))


def test_trojan_optimised_pattern_raises_selected_neurons() -> None:
    data = bundle(200)
    attack = Trojan(steps=40, batch_size=16, neurons=2)
    attack.setup(data)
    start = attack.pattern.clone()
    poisoned = attack.poison(data.train, context())
    info = attack.info
    assert info["activation_after"] > info["activation_before"]
    model = tiny_model()
    probe = to_float(data.train.x[:32])
    with torch.no_grad():
        after = attack.neuron_activation(model, probe)
        attack.pattern.copy_(start)
        before = attack.neuron_activation(model, probe)
    assert after > before
    assert (attack.mask.sum() / (32 * 32)).item() == pytest.approx(0.07, abs=0.01)
    relabelled = poisoned.y != data.train.y
    assert int(relabelled.sum()) == 20


def test_reflection_paper_variant_uses_a_pool_of_reflections() -> None:
    data = bundle(300)
    attack = Reflection(variant="paper", pool_size=4)
    attack.setup(data)
    assert attack.reflections.shape == (4, 3, 32, 32)
    out = attack.apply(torch.full((40, 3, 32, 32), 0.3))
    assert len({round(v, 5) for v in out.mean((1, 2, 3)).tolist()}) > 1  # different reflections


def test_attacks_that_train_on_models_demand_a_context() -> None:
    data: DataBundle = bundle()
    for attack in (Trojan(steps=1), LabelConsistent(steps=1)):
        attack.setup(data)
        with pytest.raises(ValueError, match="AttackContext"):
            attack.poison(ImageSet(data.train.x, data.train.y))


def test_reflection_images_are_outside_photos_not_training_images() -> None:
    """Refool reflects outside scenes: by default one of scikit-image's photographs, area-resized."""
    from skimage import data as photos

    data = bundle(300)
    attack = Reflection()
    attack.setup(data)
    resized = []
    for name in PHOTOS:
        image = torch.from_numpy(getattr(photos, name)().copy()).float() / 255
        image = image.permute(2, 0, 1) if image.dim() == 3 else image[None].expand(3, -1, -1)
        resized.append(F.interpolate(image[None], size=(32, 32), mode="area")[0])
    assert any(torch.allclose(attack.reflections[0], r) for r in resized)
    train = to_float(data.train.x)
    assert not any(torch.allclose(attack.reflections[0], image) for image in train)
    from_dataset = Reflection(source="dataset")
    from_dataset.setup(data)
    assert any(torch.equal(from_dataset.reflections[0], image) for image in train)
    cfg, _ = compose_cfg(["attack=reflection", "attack.source=flickr"])
    with pytest.raises(SettingError, match="attack.source"):
        validate(cfg)
