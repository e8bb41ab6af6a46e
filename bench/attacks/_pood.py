"""A public out-of-distribution (POOD) image set for attacks whose attacker knows only the target class
(NARCISSUS): Tiny-ImageNet's training images, read in place from ``data_dir`` in the layout its official
archive unpacks to (``tiny-imagenet-200/train/<wnid>/images/<wnid>_<i>.JPEG``, 64 x 64), downloaded
there when missing, resized to the victim's images. Not a dataset option: no model is evaluated on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.core.errors import ConfigError
from bench.core.images import ImageSet

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


def tiny_imagenet_train(data_dir: str | Path | None, side: int, download: bool = True) -> ImageSet:
    """Tiny-ImageNet's 200 training classes (labels 0-199 in the sorted order of their folders, as
    torchvision's ImageFolder numbers them), as uint8 images resized to ``side`` x ``side`` (bilinear with
    antialiasing, as torchvision's Resize)."""
    from PIL import Image

    root = Path(data_dir or "data") / "tiny-imagenet-200" / "train"
    if not root.is_dir() and download:
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(TINY_IMAGENET_URL, str(root.parent.parent), md5=TINY_IMAGENET_MD5)
        except OSError as exc:
            raise ConfigError(
                f"Tiny-ImageNet (NARCISSUS's out-of-distribution set) is not under {str(root)!r} and could "
                f"not be downloaded there ({exc}); unpack tiny-imagenet-200.zip under data_dir"
            ) from None
    if not root.is_dir():
        raise ConfigError(f"Tiny-ImageNet is not under {str(root)!r} (download is off)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    images, labels = [], []
    for label, wnid in enumerate(classes):
        for path in sorted((root / wnid).rglob("*.JPEG")):
            with Image.open(path) as image:
                images.append(torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1))
            labels.append(label)
    if not images:
        raise ConfigError(f"{root} holds no <wnid>/images/*.JPEG files")
    x = torch.stack(images).float()
    if x.shape[-1] != side:
        x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return ImageSet(x.round().clamp(0, 255).to(torch.uint8), torch.tensor(labels))
