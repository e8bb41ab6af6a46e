"""STL-10 (Coates et al., 2011), labelled train/test splits from the binary distribution, 96x96.

torchvision downloads and verifies the archive; the binary files are read here (column-major
images, labels 1..10), so tests can write small files in the same format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.core.images import ImageSet
from bench.datasets._base import ImageDataset

FOLDER = "stl10_binary"


def read_stl_split(root: Path, split: str) -> ImageSet:
    d = root / FOLDER
    x = np.fromfile(d / f"{split}_X.bin", dtype=np.uint8).reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
    y = np.fromfile(d / f"{split}_y.bin", dtype=np.uint8).astype(np.int64) - 1
    return ImageSet(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))


class STL10(ImageDataset):
    name = "stl10"
    num_classes = 10
    mean = (0.4467, 0.4398, 0.4066)
    std = (0.2603, 0.2566, 0.2713)

    def _present(self, root: Path) -> bool:
        return all((root / FOLDER / f"{s}_{k}.bin").is_file() for s in ("train", "test") for k in "Xy")

    def _download(self, root: Path) -> None:
        from torchvision.datasets import STL10 as TVSTL10

        TVSTL10(str(root), split="train", download=True)

    def _load(self, root: Path) -> tuple[ImageSet, ImageSet]:
        return read_stl_split(root, "train"), read_stl_split(root, "test")
