"""``trigger_file=true``: each attack's trigger is the reference formula on the reference file (UNIT's and
BackdoorVault's), written here from their code's formulas with PIL, NumPy and torchvision directly, not
from ours; a missing file is fetched into ``data_dir`` and checked by SHA-256, and when it can be neither
found nor fetched the error says where it was looked for."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bench.attacks import _assets
from bench.attacks.badnets import BadNets
from bench.attacks.blend import Blend
from bench.attacks.reflection import Reflection
from bench.attacks.sig import SIG
from bench.attacks.wanet import WaNet
from bench.core.errors import ConfigError
from bench.core.images import DataBundle, ImageSet
from tests.conftest import DATA_DIR

VAULT, UNIT = DATA_DIR / "backdoorvault", DATA_DIR / "unit_reference"
pytestmark = pytest.mark.skipif(
    not (VAULT.is_dir() and UNIT.is_dir()), reason=f"the reference trigger files are not under {DATA_DIR}"
)


def attacked(attack: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``attack`` set up on a small 32x32 RGB bundle read with ``data_dir``, then applied to ``x``."""
    images = ImageSet(torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8), torch.arange(20) % 10)
    attack.setup(DataBundle("cifar10", images, images, 10, (0.5,) * 3, (0.25,) * 3, str(DATA_DIR)))
    return attack.apply(x)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_badnets_pastes_unit_s_flower(x: torch.Tensor) -> None:
    """UNIT's badnet.py: the flower resized to side/6 = 5 with LANCZOS, RGB, at (1, 1)."""
    with Image.open(UNIT / "trigger/badnet/flower_nobg.png") as image:
        patch = torch.tensor(np.asarray(image.resize((5, 5), Image.LANCZOS)) / 255.0).permute(2, 0, 1)[:3]
    expected = x.clone()
    expected[:, :, 1:6, 1:6] = patch.float()
    assert torch.allclose(attacked(BadNets(trigger_file=True), x), expected, atol=1e-6)


def test_blend_and_sig_are_backdoorvault_s_blends(x: torch.Tensor) -> None:
    """BackdoorVault's Other.inject: 0.2 pattern + 0.8 x, clamped; the patterns as its .pt files hold them."""
    blend = torch.tensor(np.load(VAULT / "trigger/other/blend.npy") / 255.0).permute(2, 0, 1).float()
    assert torch.allclose(
        attacked(Blend(trigger_file=True), x), (0.2 * blend + 0.8 * x).clamp(0, 1), atol=1e-6
    )
    sig = torch.tensor(np.load(VAULT / "trigger/other/sig.npy") / 255.0).float()
    assert torch.allclose(attacked(SIG(trigger_file=True), x), (0.2 * sig + 0.8 * x).clamp(0, 1), atol=1e-6)


def test_wanet_warps_with_the_reference_grids(x: torch.Tensor) -> None:
    """UNIT's wanet.py: grid = clamp(identity + 0.5 noise / 32, -1, 1), bilinear, align_corners."""
    load = {
        n: torch.load(VAULT / f"trigger/wanet/{n}_grid.pt", map_location="cpu") for n in ("noise", "identity")
    }
    grid = (load["identity"] + 0.5 * load["noise"] / 32).clamp(-1, 1)
    expected = F.grid_sample(x, grid.repeat(len(x), 1, 1, 1), align_corners=True)
    assert torch.allclose(attacked(WaNet(trigger_file=True), x), expected, atol=1e-6)


def test_reflection_blends_the_reference_image(x: torch.Tensor) -> None:
    """UNIT's reflection.py: weights by mean intensity against 000066.jpg, resized by torchvision."""
    from torchvision import transforms
    from torchvision.io import read_image

    trigger = transforms.Resize((32, 32))(read_image(str(VAULT / "trigger/refool/000066.jpg")) / 255.0)
    w_t = trigger.mean()
    expected = torch.stack([((w := img.mean()) / (w + w_t) * img + w_t / (w + w_t) * trigger).clamp(0, 1)
                            for img in x])  # fmt: skip
    assert torch.allclose(attacked(Reflection(source="file"), x), expected, atol=1e-5)


def test_other_image_sizes_are_refused_with_the_reason() -> None:
    grey = ImageSet(torch.zeros(10, 1, 28, 28, dtype=torch.uint8), torch.arange(10))
    with pytest.raises(ConfigError, match="32x32 RGB"):
        Blend(trigger_file=True).setup(DataBundle("fm", grey, grey, 10, (0.5,), (0.25,), str(DATA_DIR)))


def test_a_missing_file_is_fetched_checked_and_otherwise_named(tmp_path: Path, monkeypatch) -> None:
    server = tmp_path / "server"
    (server / "trigger/other").mkdir(parents=True)
    shutil.copy(VAULT / "trigger/other/sig.npy", server / "trigger/other/sig.npy")
    monkeypatch.setitem(_assets.SOURCES, "backdoorvault", server.as_uri() + "/")
    data = tmp_path / "data"
    path = _assets.trigger_file("backdoorvault/trigger/other/sig.npy", data)
    assert (
        path == data / "backdoorvault/trigger/other/sig.npy"
        and path.read_bytes() == (VAULT / "trigger/other/sig.npy").read_bytes()
    )
    with pytest.raises(ConfigError, match=r"blend.npy is not under .* and could not be fetched there"):
        _assets.trigger_file("backdoorvault/trigger/other/blend.npy", data)
    assert not list((data / "backdoorvault/trigger/other").glob("tmp*"))  # a failed fetch leaves nothing
    path.write_bytes(b"not the pattern")
    with pytest.raises(ConfigError, match="is not the reference backdoorvault/trigger/other/sig.npy"):
        _assets.trigger_file("backdoorvault/trigger/other/sig.npy", data)
