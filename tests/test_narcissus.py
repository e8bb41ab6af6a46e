"""NARCISSUS: a bounded additive trigger, magnified at test time only; clean labels; the trigger optimised
on a surrogate of Tiny-ImageNet (read in its archive's layout) plus the target class, or the authors'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.attacks import _assets
from bench.attacks._pood import tiny_imagenet_train
from bench.attacks.narcissus import Narcissus, widened
from bench.core.engine import Recipe
from bench.core.errors import ConfigError
from bench.core.files import sha256_file
from bench.core.images import to_float
from tests.conftest import bundle, context, tiny_model, write_tiny_imagenet


def test_tiny_imagenet_is_read_in_its_archive_layout_and_resized(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path)
    pood = tiny_imagenet_train(tmp_path, 32, download=False)
    assert pood.x.shape == (6, 3, 32, 32) and pood.x.dtype == torch.uint8
    assert pood.y.tolist() == [0, 0, 0, 1, 1, 1]  # sorted wnids, as ImageFolder numbers them
    assert pood.x[:3].float().mean() < 80 < pood.x[3:].float().mean()
    with pytest.raises(ConfigError, match="Tiny-ImageNet is not under"):
        tiny_imagenet_train(tmp_path / "empty", 32, download=False)


def test_the_test_trigger_is_the_training_trigger_magnified() -> None:
    attack = Narcissus(poison_rate=0.05, magnify=3.0)
    attack.setup(bundle())
    with torch.no_grad():
        attack.pattern.delta.fill_(0.02)
        attack.pattern.delta[..., 0, 0] = 0.5  # beyond the radius: clipped to 16/255
    x = torch.full((2, 3, 32, 32), 0.5)
    assert torch.allclose(attack.apply(x)[..., 1, 1], torch.full((2, 3), 0.56))
    assert torch.allclose(attack.apply(x)[..., 0, 0], torch.full((2, 3), 0.5 + 3 * 16 / 255))
    trained = to_float(attack.poisoned_images(torch.full((1, 3, 32, 32), 128, dtype=torch.uint8), None))
    assert trained[0, 0, 1, 1].item() == pytest.approx((128 + 0.02 * 255) / 255, abs=1 / 255)


def test_poisoning_changes_only_target_class_images_and_no_label() -> None:
    data = bundle(400)
    attack = Narcissus(poison_rate=0.025)
    attack.setup(data)
    with torch.no_grad():
        attack.pattern.delta.fill_(0.03)
    poisoned = attack.poison(data.train, context())  # a context without data: the stub trains nothing
    assert torch.equal(poisoned.y, data.train.y)
    changed = (poisoned.x != data.train.x).flatten(1).any(1)
    assert (data.train.y[changed] == 0).all() and int(changed.sum()) == 10


def test_optimise_learns_a_bounded_trigger_towards_the_target_class(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path)
    data = bundle(200)
    data.data_dir = str(tmp_path)
    attack = Narcissus(poison_rate=0.05, surrogate_epochs=1, warmup_epochs=1, gen_epochs=2, batch_size=16)
    attack.setup(data)
    lent = context(data.train, Recipe(epochs=1))
    attack.poison(data.train, lent)
    delta = attack.pattern.delta
    assert delta.abs().max() > 0 and attack.delta().abs().max() <= 16 / 255 + 1e-7
    assert lent.models.facts["narcissus_trigger"]["gen_epochs_run"] == 2
    assert not delta.requires_grad


def test_widened_surrogate_has_one_more_class_than_the_pood_set() -> None:
    model = widened(tiny_model(), 201)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 201)


def test_the_authors_trigger_is_read_in_image_units_and_needs_their_target(
    tmp_path: Path, monkeypatch
) -> None:
    stored = np.full((1, 3, 32, 32), 2 * 10 / 255, dtype=np.float32)  # [-1, 1] units, as the authors save it
    path = tmp_path / "narcissus" / "resnet18_trigger.npy"
    path.parent.mkdir()
    np.save(path, stored)
    monkeypatch.setitem(_assets.SHA256, "narcissus/resnet18_trigger.npy", sha256_file(path))
    data = bundle()
    data.data_dir = str(tmp_path)
    attack = Narcissus(target=2, trigger="file")
    attack.setup(data)
    assert torch.allclose(attack.delta(), torch.full((1, 3, 32, 32), 10 / 255))
    with pytest.raises(ConfigError, match="target class 2"):
        Narcissus(target=0, trigger="file")
