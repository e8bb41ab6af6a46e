"""DFST's ``style=sunrise``: BackdoorVault's CycleGAN shapes (a 2 x 2 patch score for a 32 x 32 image),
one update moves all four networks, and the loop trains on the 250 real sunrise photographs."""

from __future__ import annotations

import copy

import pytest
import torch

from bench.attacks import _assets, dfst
from bench.attacks.dfst import DFST, SunriseCycleGAN
from bench.core.images import DataBundle, ImageSet
from tests.conftest import DATA_DIR

HAVE_PHOTOS = (DATA_DIR / _assets.SUNRISE).is_dir()
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)


def test_generators_keep_the_image_shape_and_discriminators_score_patches() -> None:
    gan = SunriseCycleGAN(MEAN, STD)
    x = torch.rand(2, 3, 32, 32)
    styled = gan.stylise(x)
    assert styled.shape == x.shape and styled.min() >= 0 and styled.max() <= 1
    assert gan.d_a(gan.normalize(x)).shape == (2, 1, 2, 2)  # BackdoorVault's label shape


def test_one_step_updates_every_network() -> None:
    torch.manual_seed(0)
    gan = SunriseCycleGAN(MEAN, STD)
    optimizers = {n: torch.optim.Adam(getattr(gan, n).parameters(), 2e-4, betas=(0.5, 0.999))
                  for n in ("g_ab", "g_ba", "d_a", "d_b")}  # fmt: skip
    before = {n: [p.detach().clone() for p in getattr(gan, n).parameters()] for n in optimizers}
    losses = gan.step(
        gan.normalize(torch.rand(4, 3, 32, 32)), gan.normalize(torch.rand(4, 3, 32, 32)), optimizers
    )
    assert set(losses) == {"d", "fool", "cycle", "identity"} and all(v == v for v in losses.values())
    for name, params in before.items():
        assert any(
            not torch.equal(p, q) for p, q in zip(params, getattr(gan, name).parameters(), strict=True)
        )


@pytest.mark.skipif(not HAVE_PHOTOS, reason=f"the sunrise photographs are not under {DATA_DIR}")
def test_the_loop_reads_the_250_photos_and_reports_its_losses(monkeypatch) -> None:
    photos = _assets.sunrise_photos(DATA_DIR)
    assert photos.shape == (250, 3, 32, 32) and photos.dtype == torch.uint8
    monkeypatch.setattr(dfst, "SUNRISE_BATCH", 8)  # one epoch of 20 training images: three small steps
    images = ImageSet(torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8), torch.arange(20) % 10)
    attack = DFST(style="sunrise", style_steps=1)
    attack.setup(DataBundle("cifar10", images, images, 10, MEAN, STD, str(DATA_DIR)))
    steps = []
    monkeypatch.setattr(SunriseCycleGAN, "step", lambda self, a, b, opt: steps.append(len(a)) or {"d": 0.0})
    facts = attack.train_sunrise(attack.style, images, type("Ctx", (), {"device": torch.device("cpu"),
                                                                        "progress": False})())  # fmt: skip
    assert steps == [8, 8, 4] and facts == {"final_losses": {"d": 0.0}}


class MemoryCheckpoint:
    """A checkpoint in memory, due every epoch; its ``kill_after``-th save ends the run (a session ends)."""

    def __init__(self, kill_after: int | None = None) -> None:
        self.state: dict | None = None
        self.saves, self.kill_after = 0, kill_after

    def load(self) -> dict | None:
        return copy.deepcopy(self.state)

    def due(self) -> bool:
        return True

    def save(self, state: dict) -> None:
        self.state, self.saves = copy.deepcopy(state), self.saves + 1
        if self.saves == self.kill_after:
            raise KeyboardInterrupt


@pytest.mark.skipif(not HAVE_PHOTOS, reason=f"the sunrise photographs are not under {DATA_DIR}")
def test_a_killed_training_resumes_to_the_uninterrupted_answer(monkeypatch) -> None:
    """Three epochs in one go, and one epoch then a kill then a restart in a new attack object, give the
    same generator to the last bit: the checkpoint holds the networks, Adam's moments and the random
    generator that draws the batches and the augmentation."""
    monkeypatch.setattr(dfst, "SUNRISE_BATCH", 4)  # 8 training images: two steps of 4 an epoch
    images = ImageSet(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 10)
    ctx = type("Ctx", (), {"device": torch.device("cpu"), "progress": False})()

    def attack() -> DFST:
        a = DFST(style="sunrise", style_steps=3)
        a.setup(DataBundle("cifar10", images, images, 10, MEAN, STD, str(DATA_DIR)))
        return a

    whole = attack()
    whole.train_sunrise(whole.style, images, ctx, MemoryCheckpoint())
    checkpoint = MemoryCheckpoint(kill_after=1)
    with pytest.raises(KeyboardInterrupt):
        killed = attack()
        killed.train_sunrise(killed.style, images, ctx, checkpoint)
    assert checkpoint.state is not None and checkpoint.state["epochs"] == 1
    resumed = attack()
    resumed.train_sunrise(resumed.style, images, ctx, checkpoint)
    ours = resumed.style.state_dict()
    for name, p in whole.style.state_dict().items():
        assert torch.equal(p, ours[name]), name
