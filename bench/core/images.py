"""Images in memory and the operations every plug-in family shares on them.

Images are stored as uint8 (N, C, H, W), as files hold them; models, attacks and defenses compute on
float images in [0, 1] (``to_float``) and store results back as uint8 (``quantize``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.core.errors import ConfigError, check_fraction


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
    data_dir: str | None = None  # where the dataset was read from: reference trigger files sit beside it


def balanced_subset(y: torch.Tensor, fraction: float, seed: int, setting: str | None = None) -> torch.Tensor:
    """Indices of a seeded subset holding ``round(fraction * class size)`` samples of every class (at
    least one). With ``setting`` (the user's key and value), a share that rounds to no image of some class
    is refused with the numbers instead of being raised to one silently.

    Used for the defender's clean data (5% of train by default, as in the paper) and for the
    train/test subsets of the CPU settings, so every class keeps its share.
    """
    check_fraction("subset fraction", fraction)
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for c in torch.unique(y).tolist():
        members = torch.nonzero(y == c).flatten()
        if setting is not None and round(fraction * len(members)) < 1:
            raise ConfigError(
                f"{setting} leaves class {c} with {fraction * len(members):.2g} of its {len(members)} "
                "images (a class-balanced share rounds that to none); every class needs at least one"
            )
        k = max(1, round(fraction * len(members)))
        picked.append(members[torch.randperm(len(members), generator=gen)[:k]])
    return torch.sort(torch.cat(picked)).values


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8, as a poisoned image saved to disk would be."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def stamp(x: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """``(1 - mask) x + mask pattern``: paste (or blend, for fractional masks) a pattern into images."""
    return (1 - mask) * x + mask * pattern


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255)
