"""``attack.poisoning``: ``fixed_subset`` triggers a seeded share of the training set once, so the
training crop/flip moves the trigger with the image; ``in_batch`` (BackdoorVault's order) triggers each
batch after its augmentation, so the model always sees the trigger where it was stamped."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from bench.attacks.badnets import BadNets
from bench.core.engine import Recipe, fit
from bench.core.errors import SettingError
from bench.core.images import DataBundle, ImageSet
from bench.run.validation import validate
from tests.conftest import compose_cfg


class Recorder(nn.Module):
    """A linear classifier that keeps every batch it is fed."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 32 * 32, 10)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().float().clone())
        return self.linear(x.float().flatten(1))


def seen_batches(poisoning: str) -> torch.Tensor:
    """Black non-target images, every one poisoned by BadNets' white 3x3 bottom-right patch, trained one
    epoch under flip-only augmentation; what the model was fed."""
    images = ImageSet(torch.zeros(64, 3, 32, 32, dtype=torch.uint8), torch.arange(64) % 9 + 1)
    attack = BadNets(target=0, poison_rate=1.0, variant="paper", poisoning=poisoning)
    attack.setup(DataBundle("toy", images, images, 10, (0.0,) * 3, (1.0,) * 3))
    model = Recorder()
    recipe = Recipe(epochs=2, batch_size=16, lr=0.01, crop_pad=0, hflip=True)
    fit(model, attack.poison(images), recipe, torch.device("cpu"), hooks=attack, progress=False)
    return torch.cat(model.seen)


def test_in_batch_stamps_after_the_flip() -> None:
    seen = seen_batches("in_batch")
    assert (seen[:, :, 29:, 29:] == 1).all()  # every image, the patch where BadNets stamps it
    assert (seen[:, :, 29:, :3] == 0).all()  # and never mirrored to the other corner


def test_fixed_subset_is_flipped_with_its_image() -> None:
    seen = seen_batches("fixed_subset")
    right = (seen[:, :, 29:, 29:] == 1).flatten(1).all(1)
    left = (seen[:, :, 29:, :3] == 1).flatten(1).all(1)
    assert (right ^ left).all() and 0.25 < left.float().mean() < 0.75  # about half of them mirrored


def test_in_batch_relabels_only_its_share() -> None:
    """Half of each batch's non-target images get the trigger and the target label; the data stays clean."""
    images = ImageSet(torch.zeros(64, 3, 32, 32, dtype=torch.uint8), torch.arange(64) % 10)
    attack = BadNets(target=0, poison_rate=0.5, variant="paper", poisoning="in_batch")
    attack.setup(DataBundle("toy", images, images, 10, (0.0,) * 3, (1.0,) * 3))
    assert attack.poison(images) is images
    x, y = attack.augmented_batch_hook(images.x[:16].float() / 255, images.y[:16])
    stamped = (x[:, :, 29:, 29:] == 1).flatten(1).all(1)
    assert stamped.sum() == 8 and (y[stamped] == 0).all() and (y[~stamped] == images.y[:16][~stamped]).all()
    cfg, _ = compose_cfg(["attack=badnets", "attack.poisoning=per_epoch"])
    with pytest.raises(SettingError, match="attack.poisoning='per_epoch' is not allowed"):
        validate(cfg)


def shift_correlation(pattern: torch.Tensor) -> float:
    """Correlation of a pattern with itself moved one pixel to the right (what a crop does to it)."""
    a, b = pattern[..., :, 1:].flatten(), pattern[..., :, :-1].flatten()
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


def test_adap_blend_photo_pattern_survives_a_one_pixel_crop() -> None:
    """The noise pattern is uncorrelated with itself one pixel away (a cropped training trigger is not the
    test trigger); the photograph, like the paper's cartoon, stays close to itself."""
    from bench.attacks.adap_blend import AdaptiveBlend

    images = ImageSet(torch.zeros(10, 3, 32, 32, dtype=torch.uint8), torch.arange(10))
    bundle = DataBundle("toy", images, images, 10, (0.0,) * 3, (1.0,) * 3)
    noise, photo = AdaptiveBlend(pattern="noise"), AdaptiveBlend(pattern="photo")
    noise.setup(bundle)
    photo.setup(bundle)
    assert abs(shift_correlation(noise.pattern)) < 0.1 and shift_correlation(photo.pattern) > 0.8
