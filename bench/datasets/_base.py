"""The base loader every dataset plug-in extends (root resolution, download, class-balanced shrinking)."""

from __future__ import annotations

from pathlib import Path

from bench.core.errors import ConfigError
from bench.core.images import DataBundle, ImageSet, balanced_subset
from bench.core.schema import PositiveInt


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
        train_size: PositiveInt | None = None,
        test_size: PositiveInt | None = None,
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
        return DataBundle(self.name, train, test, self.num_classes, self.mean, self.std, str(self.data_dir))

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
        return data.subset(
            balanced_subset(data.y, size / len(data), self.subset_seed, f"dataset.{key}={size}")
        )

    def _present(self, root: Path) -> bool:
        raise NotImplementedError

    def _load(self, root: Path) -> tuple[ImageSet, ImageSet]:
        raise NotImplementedError

    def _download(self, root: Path) -> None:
        raise NotImplementedError(f"{self.name} cannot be downloaded; place it under {root}")
