"""Shared fixtures: compose the real config tree the way the entry point does, shrunk for tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from bench.attacks import AttackContext
from bench.catalogue import CONF_DIR, options
from bench.core.engine import Recipe, fit
from bench.core.images import DataBundle, ImageSet
from bench.defenses import DefenderContext
from bench.models import Normalized
from bench.models.resnet import resnet18
from bench.run.cell import compose_job

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parent.parent
# The real CIFAR-10 beside the checkout (what `make` points $BENCH_DATA_DIR at), also under plain pytest.
SHARED_DATA = REPO.parent / "shared" / "data"
if (SHARED_DATA / "cifar10").is_dir():
    os.environ.setdefault("BENCH_DATA_DIR", str(SHARED_DATA))
DATA_DIR = Path(os.environ.get("BENCH_DATA_DIR") or REPO / "data")
CIFAR10_AVAILABLE = (DATA_DIR / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
FASHION_AVAILABLE = (
    Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists()
    or (DATA_DIR / "fashion_mnist").exists()
)
# The end-to-end smoke cells run on a real CIFAR-10 subset when the data is here, else on Fashion-MNIST.
SMOKE_DATASET = "cifar10" if CIFAR10_AVAILABLE else "fashion_mnist"
needs_fashion = pytest.mark.skipif(not FASHION_AVAILABLE, reason="Fashion-MNIST not installed (make data)")
needs_cifar10 = pytest.mark.skipif(not CIFAR10_AVAILABLE, reason=f"CIFAR-10 not under {DATA_DIR}")
needs_smoke_data = pytest.mark.skipif(
    not (CIFAR10_AVAILABLE or FASHION_AVAILABLE), reason="neither CIFAR-10 nor Fashion-MNIST is here"
)


def slow_params(*values: str) -> list:
    """Parameters marked ``slow`` (``make test-full``): the other architectures of a check that ``make test``
    runs on ResNet-18."""
    return [pytest.param(v, marks=pytest.mark.slow) for v in values]


def group_options(group: str) -> list[str]:
    """Every option of a config group: adding a YAML file adds it to the parametrized tests."""
    return options(group)


def is_timm(model: str) -> bool:
    """A ``conf/model`` option built by timm (no width of the suite's: it keeps its own)."""
    return "timm_model" in (CONF_DIR / "model" / f"{model}.yaml").read_text()


def compose_cfg(overrides: list[str]) -> tuple[DictConfig, dict[str, str]]:
    """(config, chosen option per group), exactly as ``python -m bench <overrides>`` would see them."""
    return compose_job(overrides)


@pytest.fixture
def smoke_cfg(tmp_path: Path) -> Callable[..., tuple[DictConfig, dict[str, str]]]:
    """``experiment=smoke`` on ``SMOKE_DATASET`` plus overrides, with results and cache under ``tmp_path``."""

    def make(*overrides: str) -> tuple[DictConfig, dict[str, str]]:
        cfg, names = compose_cfg(
            ["experiment=smoke", f"dataset={SMOKE_DATASET}", f"results_dir={tmp_path}/runs",
             f"cache_dir={tmp_path}/cache", *overrides]
        )  # fmt: skip
        OmegaConf.set_readonly(cfg, False)
        return cfg, names

    return make


def toy_data(n: int = 200, seed: int = 0) -> ImageSet:
    """Ten classes a small model learns in seconds: class c brightens row band c."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = torch.randint(0, 60, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    for c in range(10):
        x[y == c, :, 3 * c : 3 * c + 3] += 180
    return ImageSet(x, y)


def trained_toy_model() -> nn.Module:
    torch.manual_seed(0)
    model = Normalized(resnet18(10, width=0.125), (0.5,) * 3, (0.5,) * 3)
    fit(model, toy_data(400, 1), Recipe(epochs=3, batch_size=50, lr=0.05, crop_pad=0, hflip=False),
        torch.device("cpu"), progress=False)  # fmt: skip
    return model


# -- toy data, models and contexts shared by the attack and defense tests ------------------------------
CPU = torch.device("cpu")
NO_EPOCHS = Recipe(epochs=0)


def bundle(n: int = 200, classes: int = 10) -> DataBundle:
    """Random uint8 images with cycling labels, as a dataset bundle (the test split is the first 50)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % classes
    return DataBundle("toy", ImageSet(x, y), ImageSet(x[:50], y[:50]), classes, (0.5,) * 3, (0.5,) * 3)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return Normalized(resnet18(num_classes=10, width=0.125), (0.5,) * 3, (0.5,) * 3).eval()


class StubModels:
    """AuxiliaryModels without training: a fixed random-init classifier for every request."""

    def __init__(self, train_set: ImageSet | None = None) -> None:
        self.requests: list[str] = []
        self.train_set = train_set
        self.facts: dict[str, dict[str, Any]] = {}

    def clean_classifier(self) -> nn.Module:
        self.requests.append("clean")
        return tiny_model()

    def classifier(self, name: str, spec: dict[str, Any], train: Any, **options: bool) -> nn.Module:
        self.requests.append(name)
        return tiny_model()

    def new_classifier(self) -> nn.Module:
        return tiny_model().train()

    def network(
        self, name: str, spec: dict[str, Any], module: nn.Module, train: Any, **options: bool
    ) -> nn.Module:
        """Trains ``module`` for real, on ``self.train_set`` when one is given (no cache, no checkpoint)."""
        self.requests.append(name)
        if self.train_set is not None:
            extra = (None,) if options.get("resumable") else ()
            self.facts[name] = train(module, self.train_set, *extra) or {}
        return module.eval()


def context(train_set: ImageSet | None = None, recipe: Recipe | None = None) -> AttackContext:
    return AttackContext(
        torch.device("cpu"), recipe or Recipe(epochs=1), StubModels(train_set), progress=False
    )


def ctx(n: int = 200) -> DefenderContext:
    """A defender context on toy data."""
    return DefenderContext(toy_data(n, seed=2), 10, CPU, seed=0, progress=False)


def write_tiny_imagenet(root: Path, classes: int = 2, per_class: int = 3) -> None:
    """A few 64 x 64 JPEGs in the layout tiny-imagenet-200.zip unpacks to (train/<wnid>/images/)."""
    g = np.random.default_rng(0)
    for c in range(classes):
        wnid = f"n0000000{c}"
        folder = root / "tiny-imagenet-200" / "train" / wnid / "images"
        folder.mkdir(parents=True)
        (root / "tiny-imagenet-200" / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(per_class):
            pixels = np.full((64, 64, 3), 40 + 150 * c, dtype=np.uint8) + g.integers(
                0, 20, (64, 64, 3), np.uint8
            )
            Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG")


def data_dir_with_tiny_imagenet(tmp_path: Path) -> Path:
    """A data_dir holding the real one's folders (linked) and a few Tiny-ImageNet files (NARCISSUS's POOD
    set, not reachable offline)."""
    root = tmp_path / "data"
    root.mkdir()
    for entry in DATA_DIR.iterdir() if DATA_DIR.is_dir() else []:
        (root / entry.name).symlink_to(entry.resolve())
    write_tiny_imagenet(root)
    return root
