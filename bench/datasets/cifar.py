"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009) from the python-pickle distribution.

torchvision downloads and verifies the archive for users; reading is done here from the on-disk
pickles, so the same code path is tested on small files in the exact format.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from bench.core.images import ImageSet
from bench.datasets._base import ImageDataset


def read_cifar_batches(files: list[Path], label_key: str) -> ImageSet:
    xs, ys = [], []
    for path in files:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(entry[label_key], dtype=np.int64))
    return ImageSet(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))


class CIFAR10(ImageDataset):
    name = "cifar10"
    num_classes = 10
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    label_key = "labels"

    def _present(self, root: Path) -> bool:
        return all((root / self.folder / f).is_file() for f in self.train_files + self.test_files)

    def _download(self, root: Path) -> None:
        from torchvision import datasets as tvd

        getattr(tvd, type(self).__name__)(str(root), train=True, download=True)

    def _load(self, root: Path) -> tuple[ImageSet, ImageSet]:
        d = root / self.folder
        return (
            read_cifar_batches([d / f for f in self.train_files], self.label_key),
            read_cifar_batches([d / f for f in self.test_files], self.label_key),
        )


class CIFAR100(CIFAR10):
    name = "cifar100"
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    folder = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    label_key = "fine_labels"
