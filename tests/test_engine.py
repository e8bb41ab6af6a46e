"""The training engine: batched augmentation, recipe validation, learning on a tiny problem."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn as nn

from bench.core import engine
from bench.core.engine import Recipe, TrainingHooks, augment, autocast, fit, make_optimizer, precision
from bench.core.errors import ConfigError, SettingError
from bench.core.images import ImageSet
from bench.run.validation import validate
from tests.conftest import compose_cfg


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


@pytest.mark.parametrize("override", ["epochs=-1", "batch_size=0", "lr=0", "schedule=poly"])
def test_bad_recipe(override: str) -> None:
    cfg, _ = compose_cfg([f"train.{override}"])
    with pytest.raises(SettingError, match=f"train.{override.split('=')[0]}"):
        validate(cfg)


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


class Flat(nn.Module):
    """A bias-free linear model of the flattened image, optionally behind a batch-norm."""

    def __init__(self, bn: bool = False) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(1) if bn else nn.Identity()
        self.w = nn.Parameter(torch.tensor([[0.5, -1.0, 2.0, 0.25]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x).flatten(1) @ self.w.t()


def mse(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return ((m(xb).squeeze(1) - yb.float()) ** 2).mean()


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_steps_with_the_gradient_at_the_climbed_weights(adaptive: bool) -> None:
    """One SGD step (no momentum, no decay) from w with the gradient taken at w + e, e = rho g / ||g|| (or
    rho w^2 g / || |w| g || when adaptive): computed here by hand with autograd on the same loss."""
    x = torch.tensor([[[[10, 20], [30, 40]]], [[[50, 0], [5, 25]]]], dtype=torch.uint8)
    y = torch.tensor([1, 3])
    recipe = Recipe(epochs=1, batch_size=2, lr=0.1, momentum=0.0, weight_decay=0.0, schedule="constant",
                    crop_pad=0, hflip=False, sam_rho=0.5, sam_adaptive=adaptive)  # fmt: skip
    model = Flat()
    w = model.w.detach().clone()
    fit(model, ImageSet(x, y), recipe, torch.device("cpu"), loss_fn=mse, progress=False)
    xf = x.float() / 255

    def grad_at(v: torch.Tensor) -> torch.Tensor:
        v = v.clone().requires_grad_(True)
        (((xf.flatten(1) @ v.t()).squeeze(1) - y.float()) ** 2).mean().backward()
        return v.grad

    g = grad_at(w)
    scaled = w.abs() * g if adaptive else g
    e = 0.5 * g / scaled.norm() * (w**2 if adaptive else 1.0)
    assert torch.allclose(model.w.detach(), w - 0.1 * grad_at(w + e), atol=1e-6)


def test_sam_leaves_batch_norm_statistics_to_the_first_pass() -> None:
    x = torch.randint(0, 256, (8, 1, 2, 2), dtype=torch.uint8)
    y = torch.arange(8) % 3
    base = {"epochs": 1, "batch_size": 8, "lr": 0.1, "crop_pad": 0, "hflip": False}
    plain, sam = Flat(bn=True), Flat(bn=True)
    fit(plain, ImageSet(x, y), Recipe(**base), torch.device("cpu"), loss_fn=mse, progress=False)
    fit(sam, ImageSet(x, y), Recipe(**base, sam_rho=0.05), torch.device("cpu"), loss_fn=mse, progress=False)
    assert torch.equal(plain.bn.running_mean, sam.bn.running_mean)
    assert torch.equal(plain.bn.running_var, sam.bn.running_var)


def matmul_dtype() -> torch.dtype:
    with autocast(torch.device("cpu")):
        return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype


def test_precision_holds_for_its_block_only() -> None:
    """A cell's precision is the precision of its run, never of the process: it ends with the block, even
    when the block fails, so the next cell of a sweep starts from the default."""
    assert matmul_dtype() == torch.float32  # auto: float32 on the CPU
    with pytest.raises(RuntimeError), precision("bf16"):
        assert matmul_dtype() == torch.bfloat16
        with precision("fp32"):
            assert matmul_dtype() == torch.float32
        assert matmul_dtype() == torch.bfloat16
        raise RuntimeError("the cell failed")
    assert matmul_dtype() == torch.float32
    with pytest.raises(ConfigError, match="precision must be one of"), precision("fp16"):
        pass


def test_cyclic_schedule_climbs_to_each_phases_peak_and_back() -> None:
    """Super-FT's two phases: triangular cycles of 10 iterations up and 10 down between the base lr and a
    peak of 2.5 for the first 40% of training, of 0.05 after."""
    recipe = Recipe(lr=0.03, momentum=0.0, schedule="cyclic", cycle_steps=10, cycle_peaks=(2.5, 0.05),
                    cycle_switch=0.4)  # fmt: skip
    opt, sched = make_optimizer(nn.Linear(2, 2), recipe, steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.03) and lrs[10] == pytest.approx(2.5) and lrs[20] == pytest.approx(0.03)
    assert lrs[5] == pytest.approx(0.03 + 2.47 / 2) and lrs[15] == pytest.approx(0.03 + 2.47 / 2)
    assert lrs[30] == pytest.approx(2.5) and lrs[50] == pytest.approx(0.05) and lrs[90] == pytest.approx(0.05)
    assert max(lrs[40:]) == pytest.approx(0.05) and min(lrs) == pytest.approx(0.03)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_that_emulates_it_is_named_once(native: bool, monkeypatch, caplog) -> None:
    """On an AVX2 CPU bf16 autocast is emulated (about 13x slower than float32, measured): a run asking for
    it says so once, and a CPU with AVX-512 BF16 or AMX hears nothing."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    engine.warn_emulated_bf16.cache_clear()
    with caplog.at_level(logging.WARNING), precision("bf16"):
        autocast(torch.device("cpu"))
        autocast(torch.device("cpu"))
    with caplog.at_level(logging.WARNING), precision("fp32"):
        autocast(torch.device("cpu"))
    assert caplog.text.count("emulates bf16") == (0 if native else 1)
