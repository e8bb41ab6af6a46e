"""Dataset loaders read the exact on-disk formats; subsets and the defender split are balanced."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.core.errors import ConfigError
from bench.core.images import balanced_subset
from bench.datasets.cifar import CIFAR10, CIFAR100
from bench.datasets.fashion_mnist import FashionMNIST, read_idx
from bench.datasets.gtsrb import GTSRB
from bench.datasets.stl10 import STL10
from tests.conftest import DATA_DIR, needs_cifar10, needs_fashion

RNG = np.random.default_rng(0)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion(root: Path, n_train: int = 40, n_test: int = 20) -> None:
    root.mkdir(parents=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{split}-images-idx3-ubyte.gz", RNG.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_fashion_mnist_from_idx_files(tmp_path: Path) -> None:
    write_fashion(tmp_path / "fm")
    data = FashionMNIST(root=str(tmp_path / "fm"), download=False).load()
    assert data.train.x.shape == (40, 3, 32, 32) and data.train.x.dtype == torch.uint8
    assert data.test.x.shape == (20, 3, 32, 32)
    raw = read_idx(tmp_path / "fm" / "train-images-idx3-ubyte.gz")
    assert torch.equal(data.train.x[:, 1, 2:30, 2:30], torch.from_numpy(raw.copy()))
    assert data.train.x[:, :, :2].sum() == 0  # zero padding
    assert torch.equal(data.train.x[:, 0], data.train.x[:, 2])


def test_truncated_idx_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (5, 28, 28)) + b"\0" * 100)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


@needs_fashion
def test_real_fashion_mnist() -> None:
    data = FashionMNIST().load()
    assert len(data.train) == 60000 and len(data.test) == 10000
    assert torch.bincount(data.train.y).tolist() == [6000] * 10
    pixels = data.train.x[:, 0].float().div(255)
    assert abs(pixels.mean().item() - data.mean[0]) < 1e-3 and abs(pixels.std().item() - data.std[0]) < 1e-3


@needs_cifar10
def test_real_cifar10_read_in_place_from_data_dir() -> None:
    """The real CIFAR-10 under data_dir: complete, balanced, labels 0..9, the published mean and std."""
    data = CIFAR10(data_dir=str(DATA_DIR), download=False).load()
    assert data.train.x.shape == (50000, 3, 32, 32) and data.test.x.shape == (10000, 3, 32, 32)
    assert torch.bincount(data.train.y).tolist() == [5000] * 10
    assert torch.bincount(data.test.y).tolist() == [1000] * 10
    pixels = data.train.x.float().div_(255).transpose(0, 1).reshape(3, -1)
    for c in range(3):
        assert abs(pixels[c].mean().item() - data.mean[c]) < 1e-3
        assert abs(pixels[c].std().item() - data.std[c]) < 1e-3


def test_data_dir_holds_each_dataset_in_its_own_folder(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cifar10", "cifar-10-batches-py", CIFAR10_FILES, "labels", 10)
    data = CIFAR10(data_dir=str(tmp_path), download=False).load()
    assert len(data.train) == 100
    with pytest.raises(ConfigError, match=f"'{tmp_path / 'cifar100'}' does not hold cifar100"):
        CIFAR100(data_dir=str(tmp_path), download=False).load()


def test_failed_download_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(self: CIFAR10, root: Path) -> None:
        raise OSError("Name or service not known")

    monkeypatch.setattr(CIFAR10, "_download", offline)
    with pytest.raises(ConfigError, match="could not be downloaded there .Name or service not known.; place"):
        CIFAR10(data_dir=str(tmp_path)).load()


def test_missing_root_without_download(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not hold cifar10 and dataset.download=false"):
        CIFAR10(root=str(tmp_path / "nothing"), download=False).load()


def write_cifar(root: Path, folder: str, files: dict[str, int], label_key: str, classes: int) -> None:
    (root / folder).mkdir(parents=True)
    for name, n in files.items():
        entry = {
            "data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key: list(np.arange(n) % classes),
        }
        with open(root / folder / name, "wb") as f:
            pickle.dump(entry, f)


CIFAR10_FILES = {f"data_batch_{i}": 20 for i in range(1, 6)} | {"test_batch": 10}


def test_cifar10_pickles(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar-10-batches-py", CIFAR10_FILES, "labels", 10)
    data = CIFAR10(root=str(tmp_path), download=False).load()
    assert data.train.x.shape == (100, 3, 32, 32) and data.test.x.shape == (10, 3, 32, 32)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        first = pickle.load(f)["data"][0]
    assert torch.equal(data.train.x[0].flatten(), torch.from_numpy(first))  # CHW row order


def test_cifar100_pickles(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar-100-python", {"train": 200, "test": 100}, "fine_labels", 100)
    data = CIFAR100(root=str(tmp_path), download=False).load()
    assert data.num_classes == 100 and int(data.train.y.max()) == 99


def test_stl10_binary(tmp_path: Path) -> None:
    d = tmp_path / "stl10_binary"
    d.mkdir()
    images = RNG.integers(0, 256, (4, 3, 96, 96), dtype=np.uint8)
    for split in ("train", "test"):
        images.transpose(0, 1, 3, 2).tofile(d / f"{split}_X.bin")  # STL-10 stores column-major
        np.array([1, 2, 3, 10], dtype=np.uint8).tofile(d / f"{split}_y.bin")
    data = STL10(root=str(tmp_path), download=False).load()
    assert torch.equal(data.train.x, torch.from_numpy(images))
    assert data.train.y.tolist() == [0, 1, 2, 9]


def test_gtsrb_folders_and_csv(tmp_path: Path) -> None:
    base = tmp_path / "gtsrb"
    for c in range(43):
        folder = base / "GTSRB" / "Training" / f"{c:05d}"
        folder.mkdir(parents=True)
        image = RNG.integers(0, 256, (40 + c % 3, 35, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / f"{c:05d}_00000.ppm")
    test_dir = base / "GTSRB" / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i, c in enumerate((5, 42)):
        Image.fromarray(RNG.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(test_dir / f"{i:05d}.ppm")
        rows.append(f"{i:05d}.ppm;30;30;0;0;29;29;{c}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    data = GTSRB(root=str(tmp_path), download=False).load()
    assert data.train.x.shape == (43, 3, 32, 32) and data.train.y.tolist() == list(range(43))
    assert data.test.y.tolist() == [5, 42]


def test_balanced_subset_is_balanced_and_seeded() -> None:
    y = torch.arange(1000) % 10
    idx = balanced_subset(y, 0.05, seed=3)
    assert torch.bincount(y[idx]).tolist() == [5] * 10
    assert torch.equal(idx, balanced_subset(y, 0.05, seed=3))
    assert not torch.equal(idx, balanced_subset(y, 0.05, seed=4))


def test_train_size_subset(tmp_path: Path) -> None:
    write_fashion(tmp_path / "fm", n_train=100)
    data = FashionMNIST(root=str(tmp_path / "fm"), download=False, train_size=50).load()
    assert torch.bincount(data.train.y).tolist() == [5] * 10
    with pytest.raises(ConfigError, match="train_size"):
        FashionMNIST(root=str(tmp_path / "fm"), download=False, train_size=500).load()
