"""The reference trigger files of the UNIT authors' experiments, read in place from ``data_dir`` like a
dataset, fetched from their public repositories into ``data_dir`` when missing, and checked by SHA-256
either way (a wrong or truncated file is refused, never used).

- ``backdoorvault/``: Gwinhen/BackdoorVault's ``data/`` folder (MIT), the attack code of UNIT's group:
  the Blend and SIG patterns, the Reflection image, WaNet's fixed grids.
- ``unit_reference/``: Megum1/UNIT's ``data/`` folder (MIT): its BadNets patch.
- ``narcissus/``: ruoxi-jia-group/Narcissus's ``checkpoint/`` folder (MIT): the authors' NARCISSUS trigger
  for CIFAR-10's class 2.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import torch

from bench.core.errors import ConfigError
from bench.core.files import atomic_write_bytes, sha256_file

# where each folder's files come from when missing: the repositories at the commits the checksums are of
SOURCES = {
    "backdoorvault": "https://raw.githubusercontent.com/Gwinhen/BackdoorVault/"
    "73f711ae70f507b4ade4647090b8dfeecbf66b79/data/",
    "unit_reference": "https://raw.githubusercontent.com/Megum1/UNIT/"
    "b78fe555e8c3a81a301790b76c7437215f6e9edf/data/",
    "narcissus": "https://raw.githubusercontent.com/ruoxi-jia-group/Narcissus/"
    "de128d870d7ef0560a4804e413b1c57909883195/checkpoint/",
}
# sha256sum's format (the digests of ../shared/data/README.md)
CHECKSUMS = """
28ef80304d8f62009c11fe8d5de024793dfd4b355e529e95d33e8b927b766675 backdoorvault/trigger/other/blend.npy
ee1c75ecf0b277f08181139e54c5835b3f0a1298df3282b718a5e3fb588fb97a backdoorvault/trigger/other/sig.npy
bf84c8b5d6178518ce0e0e9c6fa914e22d8fd542c9e25bf71babb9c995301507 backdoorvault/trigger/refool/000066.jpg
2e9ed79ce3b2f623abcd3477fb6bb25e9d412f387b9b1671e668990650e86512 backdoorvault/trigger/wanet/identity_grid.pt
5fdf1ee7624bf8cdaa1b9bc5648f2b98f0d36bef40cfa71472b5ba55701f3f8b backdoorvault/trigger/wanet/noise_grid.pt
85c1b5dcab00077a42ee2650f382cb8ba7f0b1725244520249a29a7a4148f4bc unit_reference/trigger/badnet/flower_nobg.png
da7156b3ae55a6e3537146d9fdd00d41a99afb40cc7baa1019e12202c022a6a6 narcissus/resnet18_trigger.npy
"""
SHA256 = {name: digest for digest, name in (line.split() for line in CHECKSUMS.strip().splitlines())}
# DFST's style domain: 250 sunrise photographs (32 x 32 PNG), their file numbers and the digest of the
# files concatenated in numeric order
SUNRISE = "backdoorvault/sunrise"
SUNRISE_SHA256 = "cbbfe0dcb2885ce041369b027492ee34fb32d22b757eebfc73aea3c85bb5feb7"
SUNRISE_NUMBERS = (
    "1-2 7-8 10-14 17-18 23 27-49 51 53 56 61-71 77-79 100-110 112 114 116 120-126 132-135 137-138 141-150 "
    "152-155 157-160 162 166-169 171-172 174-176 179-182 184-190 192-199 201-202 204-210 212-232 235-244 "
    "246 249-260 262-265 268-270 272-277 279-282 284-285 293-294 297-298 300-301 303-308 312-326 330-346 "
    "348 350-356"
)


def sunrise_numbers() -> list[int]:
    spans = (part.split("-") for part in SUNRISE_NUMBERS.split())
    return [n for span in spans for n in range(int(span[0]), int(span[-1]) + 1)]


def sunrise_photos(data_dir: str | Path | None) -> torch.Tensor:
    """The 250 sunrise photographs as uint8 (250, 3, 32, 32), fetched file by file where missing and
    checked together by SHA-256."""
    from PIL import Image

    folder = Path(data_dir or "data") / SUNRISE
    paths = [folder / f"{n}.png" for n in sunrise_numbers()]
    for path in paths:
        if not path.is_file():
            try:
                fetch(f"{SUNRISE}/{path.name}", path)
            except OSError as exc:
                raise ConfigError(
                    f"DFST's sunrise photographs are not under {str(folder)!r} and could not be fetched "
                    f"there ({exc}); place backdoorvault/sunrise/ under data_dir / $BENCH_DATA_DIR"
                ) from None
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    if digest.hexdigest() != SUNRISE_SHA256:
        raise ConfigError(f"{folder} does not hold the reference sunrise photographs (SHA-256 mismatch)")
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1))
    return torch.stack(images)


def fetch(name: str, path: Path) -> None:
    """Download ``name`` from its repository to ``path`` (atomically: a failed download leaves nothing)."""
    folder, _, rest = name.partition("/")
    url = SOURCES[folder] + rest

    def download(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:  # noqa: S310 (a fixed https or file URL)
            shutil.copyfileobj(response, out)

    atomic_write_bytes(path, download)


def trigger_file(name: str, data_dir: str | Path | None) -> Path:
    """The checked path of the trigger file ``name`` (a key of ``SHA256``) under ``data_dir``, fetched there
    when missing; one ``ConfigError`` saying where it was looked for when neither works."""
    if name not in SHA256:
        raise KeyError(f"unknown trigger file {name!r}; known: {sorted(SHA256)}")
    path = Path(data_dir or "data") / name
    if not path.is_file():
        try:
            fetch(name, path)
        except OSError as exc:  # no network, a read-only data_dir, a missing file upstream
            raise ConfigError(
                f"the trigger file {name} is not under {str(path.parent)!r} and could not be fetched there "
                f"({exc}); place it there, or point data_dir / $BENCH_DATA_DIR at a folder holding {name}"
            ) from None
    if (digest := sha256_file(path)) != SHA256[name]:
        raise ConfigError(f"{path} is not the reference {name} (SHA-256 {digest[:12]}..., expected "
                          f"{SHA256[name][:12]}...); delete it to fetch it again")  # fmt: skip
    return path


def rgb_image(name: str, data_dir: str | Path | None, side: int | None = None) -> torch.Tensor:
    """A trigger image file as a float (3, H, W) tensor in [0, 1] (an alpha channel dropped, as the
    reference codes slice ``[:3]``), first resized by PIL to ``side`` x ``side`` with LANCZOS when given
    (UNIT's BadNets patch)."""
    from PIL import Image

    with Image.open(trigger_file(name, data_dir)) as image:
        image = image.resize((side, side), Image.LANCZOS) if side is not None else image
        pixels = np.asarray(image.convert("RGBA") if image.mode in ("P", "LA") else image)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return torch.from_numpy(pixels[..., :3].copy()).permute(2, 0, 1).float().div_(255)


def photo(name: str, size: tuple[int, int]) -> torch.Tensor:
    """One of scikit-image's bundled photographs (installed with the package, no download) as a float
    (1, 3, H, W) image in [0, 1], area-resized; a grey one repeated to three channels."""
    import torch.nn.functional as F
    from skimage import data as photos

    image = torch.from_numpy(getattr(photos, name)().copy()).float().div_(255)
    image = image.permute(2, 0, 1) if image.dim() == 3 else image[None].expand(3, -1, -1)
    return F.interpolate(image[None], size=size, mode="area")


def needs_rgb32(image_shape: torch.Size, attack: str) -> None:
    """The reference files are 32 x 32 RGB (CIFAR-10's size): refuse other images with the reason."""
    if tuple(image_shape) != (3, 32, 32):
        raise ConfigError(
            f"attack={attack} with trigger_file=true uses the reference 32x32 RGB trigger files; these "
            f"images are {tuple(image_shape)} (use trigger_file=false)"
        )
