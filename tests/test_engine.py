"""The training engine: batched augmentation, recipe validation, learning on a tiny problem."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from bench.core.engine import Recipe, TrainingHooks, augment, fit
from bench.core.errors import ConfigError
from bench.core.images import ImageSet


def test_crop_is_a_shift_of_the_padded_image() -> None:
    x = torch.rand(8, 3, 8, 8)
    out = augment(x, crop_pad=2, hflip=False, gen=torch.Generator().manual_seed(0))
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(8):
        assert any(
            torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8]) for dy in range(5) for dx in range(5)
        )


def test_flip_only_flips() -> None:
    x = torch.rand(64, 3, 4, 4)
    out = augment(x, crop_pad=0, hflip=True, gen=torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    assert (same | flipped).all() and same.any() and flipped.any()


@pytest.mark.parametrize("kwargs", [{"epochs": -1}, {"batch_size": 0}, {"lr": 0}, {"schedule": "poly"}])
def test_bad_recipe(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        Recipe(**kwargs)


def test_fit_learns_a_separable_problem() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(256) % 2
    x = torch.randint(0, 100, (256, 3, 8, 8), dtype=torch.uint8, generator=g)
    x[y == 1] += 120
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 2))
    recipe = Recipe(epochs=10, batch_size=32, lr=0.05, crop_pad=0, hflip=False)
    stats = fit(model, ImageSet(x, y), recipe, torch.device("cpu"), progress=False)
    assert stats["loss"] < 0.2 and not model.training


class Recorder(TrainingHooks):
    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def batch_hook(
        self, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append((xb.dtype, float(xb.max()), len(yb), model.training))
        return xb, yb

    def after_step(self) -> None:
        self.seen.append("step")

    def after_epoch(self, model: nn.Module, epoch: int) -> None:
        self.seen.append(("epoch", epoch))


def test_hooks_see_float_batches_steps_and_epochs() -> None:
    hooks = Recorder()

    data = ImageSet(torch.full((10, 3, 4, 4), 255, dtype=torch.uint8), torch.zeros(10))
    fit(nn.Sequential(nn.Flatten(), nn.Linear(48, 2)), data, Recipe(epochs=1, batch_size=4, lr=0.1),
        torch.device("cpu"), hooks=hooks, progress=False)  # fmt: skip
    batches = [(torch.float32, 1.0, 4, True), (torch.float32, 1.0, 4, True), (torch.float32, 1.0, 2, True)]
    assert hooks.seen == [batches[0], "step", batches[1], "step", batches[2], "step", ("epoch", 0)]


def test_fit_reports_the_training_accuracy_it_saw() -> None:
    """``acc_per_epoch``: the share of each epoch's batches the model classified right as it trained; a
    model that always answers class 0 on data that is all class 0 scores 100, on data with none 0."""

    class AlwaysZero(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([10.0, 0.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bias.expand(len(x), 2) + 0 * x.flatten(1).sum(1, keepdim=True)

    recipe = Recipe(epochs=2, batch_size=4, lr=1e-6, crop_pad=0, hflip=False)
    for label, expected in ((0, 100.0), (1, 0.0)):
        data = ImageSet(torch.zeros(8, 3, 4, 4, dtype=torch.uint8), torch.full((8,), label))
        stats = fit(AlwaysZero(), data, recipe, torch.device("cpu"), progress=False)
        assert stats["acc_per_epoch"] == [expected, expected] and len(stats["loss_per_epoch"]) == 2
