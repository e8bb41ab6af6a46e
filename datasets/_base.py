"""Shared dataset machinery: the in-memory image set, class-balanced seeded subsets, the base loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from bench.errors import ConfigError, check_fraction


@dataclass
class ImageSet:
    """Images as uint8 (N, C, H, W) and integer labels (N,), kept in memory."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.x.dtype} {tuple(self.x.shape)}")
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} images but {len(self.y)} labels")
        self.y = self.y.long()

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: torch.Tensor) -> ImageSet:
        return ImageSet(self.x[index], self.y[index])


@dataclass
class DataBundle:
    """What a cell needs from a dataset: train and test sets plus the constants models depend on."""

    name: str
    train: ImageSet
    test: ImageSet
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def balanced_subset(y: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of a seeded subset holding ``round(fraction * class size)`` samples of every class.

    Used for the defender's clean data (5% of train by default, as in the paper) and for the
    train/test subsets of the CPU settings, so every class keeps its share.
    """
    check_fraction("subset fraction", fraction)
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for c in torch.unique(y).tolist():
        members = torch.nonzero(y == c).flatten()
        k = max(1, round(fraction * len(members)))
        picked.append(members[torch.randperm(len(members), generator=gen)[:k]])
    return torch.sort(torch.cat(picked)).values


class ImageDataset:
    """Base of every dataset plug-in: resolves the root, loads both splits, optionally subsamples.

    The root is ``root`` when given, else ``<data_dir>/<name>`` (``data_dir`` is the top-level config key,
    from ``$BENCH_DATA_DIR``, default ``data``): a folder holding the files in their official on-disk
    layout is read in place, never copied; a missing one is downloaded there when ``download`` is true.
    Subclasses set ``name``, ``num_classes``, ``mean``, ``std`` and implement ``_load(root)``
    (and ``_download(root)`` when the data can be fetched).
    """

    name: str = ""
    num_classes: int = 0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __init__(
        self,
        root: str | None = None,
        download: bool = True,
        train_size: int | None = None,
        test_size: int | None = None,
        subset_seed: int = 0,
        data_dir: str | None = None,
    ) -> None:
        self.root = Path(root).expanduser() if root else None
        self.data_dir = Path(data_dir or "data").expanduser()
        self.download = download
        self.train_size = train_size
        self.test_size = test_size
        self.subset_seed = subset_seed

    def default_root(self) -> Path:
        return self.data_dir / self.name

    def load(self) -> DataBundle:
        root = self.resolve_root()
        train, test = self._load(root)
        train = self._shrink(train, self.train_size, "train_size")
        test = self._shrink(test, self.test_size, "test_size")
        return DataBundle(self.name, train, test, self.num_classes, self.mean, self.std)

    def resolve_root(self) -> Path:
        root = self.root or self.default_root()
        if self._present(root):
            return root
        if not self.download:
            raise ConfigError(
                f"dataset.root {str(root)!r} does not hold {self.name} and dataset.download=false"
            )
        try:
            root.mkdir(parents=True, exist_ok=True)
            self._download(root)
        except (OSError, RuntimeError) as exc:  # no network, a read-only folder, a failed checksum
            raise ConfigError(
                f"{self.name} is not under {str(root)!r} and could not be downloaded there ({exc}); "
                f"place its files there, or point data_dir / $BENCH_DATA_DIR at a folder holding {self.name}/"
            ) from None
        return root

    def _shrink(self, data: ImageSet, size: int | None, key: str) -> ImageSet:
        if size is None:
            return data
        if not 0 < size <= len(data):
            raise ConfigError(f"dataset.{key} must be in [1, {len(data)}], got {size}")
        return data.subset(balanced_subset(data.y, size / len(data), self.subset_seed))

    def _present(self, root: Path) -> bool:
        raise NotImplementedError

    def _load(self, root: Path) -> tuple[ImageSet, ImageSet]:
        raise NotImplementedError

    def _download(self, root: Path) -> None:
        raise NotImplementedError(f"{self.name} cannot be downloaded; place it under {root}")
