"""Fashion-MNIST (Xiao et al., 2017), padded to 32x32 and repeated to 3 channels.

The real dataset this project can use offline: Debian's ``dataset-fashion-mnist`` installs the four
IDX files under /usr/share/datasets/fashion-mnist. Padding and channel repetition let the CIFAR-style
models and every trigger run unchanged, so this is the CPU stand-in for CIFAR-10, not a renamed CIFAR.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.core.images import ImageSet
from bench.datasets._base import ImageDataset

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format: magic, dims as big-endian int32, then uint8 data)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated ({data.size} bytes for shape {dims})")
    return data.reshape(dims)


class FashionMNIST(ImageDataset):
    name = "fashion_mnist"
    num_classes = 10
    # Per-pixel mean/std of the padded 60,000-image training set (checked in tests/test_datasets.py).
    mean = (0.2190, 0.2190, 0.2190)
    std = (0.3318, 0.3318, 0.3318)

    def resolve_root(self) -> Path:
        if self.root is None:
            for candidate in (DEBIAN_ROOT, self.default_root(), self.default_root() / "FashionMNIST" / "raw"):
                if self._present(candidate):
                    return candidate
        return super().resolve_root()

    def _present(self, root: Path) -> bool:
        return self._files_dir(root) is not None

    @staticmethod
    def _files_dir(root: Path) -> Path | None:
        for d in (root, root / "FashionMNIST" / "raw"):
            if all((d / f).is_file() for pair in FILES.values() for f in pair):
                return d
        return None

    def _download(self, root: Path) -> None:
        from torchvision.datasets import FashionMNIST as TVFashionMNIST

        TVFashionMNIST(str(root), train=True, download=True)

    def _load(self, root: Path) -> tuple[ImageSet, ImageSet]:
        d = self._files_dir(root)
        assert d is not None
        out = []
        for images, labels in FILES.values():
            x = torch.from_numpy(read_idx(d / images).copy()).unsqueeze(1)
            x = F.pad(x, (2, 2, 2, 2)).expand(-1, 3, -1, -1).contiguous()
            out.append(ImageSet(x, torch.from_numpy(read_idx(d / labels).astype(np.int64))))
        return out[0], out[1]
