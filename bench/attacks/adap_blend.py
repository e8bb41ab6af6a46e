"""Adaptive-Blend (Qi et al., ICLR 2023, "Revisiting the Assumption of Latent Separability for
Backdoor Defenses").

A blend trigger cut into a ``grid`` x ``grid`` board; every poisoned training image carries only
``keep`` random pieces, blended with ``train_alpha``. A disjoint "cover" set carries partial triggers
the same way but keeps its TRUE labels, which stops the model from learning any one piece and keeps
the poisoned and clean latent representations close. At test time the full trigger is blended with
the stronger ``test_alpha``. The rates are shares of the whole training set (0.3% each in the paper);
the trigger image (``pattern``) is a seeded uniform-noise image or, as smooth as the paper's Hello Kitty
(copyrighted, not shipped), scikit-image's bundled cat photograph.
"""

from __future__ import annotations

from typing import Literal

import torch

from bench.attacks import _assets
from bench.attacks._base import AttackContext, PoisoningAttack
from bench.core.errors import ConfigError
from bench.core.images import ImageSet, quantize, stamp, to_float
from bench.core.schema import Fraction, PositiveInt

# noise: seeded uniform noise (the committed victims'; uncorrelated with itself one pixel away, so a crop
# moves every training trigger off the test one); photo: a smooth natural image, as the paper's
PHOTO = "chelsea"  # scikit-image's bundled cat photograph (no download)
Pattern = Literal["noise", "photo"]


class AdaptiveBlend(PoisoningAttack):
    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.003,
        cover_rate: Fraction = 0.003,
        grid: PositiveInt = 4,
        keep: PositiveInt = 8,
        train_alpha: Fraction = 0.15,
        test_alpha: Fraction = 0.2,
        pattern: Pattern = "noise",
        seed: int = 0,
    ) -> None:
        super().__init__(target, poison_rate, seed)
        if keep > grid * grid:
            raise ConfigError(f"keep must be at most grid^2={grid * grid} pieces, got {keep}")
        self.cover_rate, self.grid, self.keep = cover_rate, grid, keep
        self.train_alpha, self.test_alpha, self.pattern_kind = train_alpha, test_alpha, pattern

    def build(self, image_shape: torch.Size) -> None:
        c, h, w = image_shape
        if self.pattern_kind == "photo":
            image = _assets.photo(PHOTO, (h, w))
            image = image if c == 3 else image.mean(1, keepdim=True).expand(1, c, h, w)
        else:
            image = torch.rand((1, *image_shape), generator=self.generator(2))
        self.register_buffer("pattern", image)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (1 - self.test_alpha) * x + self.test_alpha * self.pattern

    def piece_masks(self, n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
        """(n, 1, h, w) masks, each covering ``keep`` random cells of the grid."""
        order = torch.rand(n, self.grid * self.grid, generator=gen).argsort(1)
        cells = torch.zeros(n, self.grid * self.grid)
        cells.scatter_(1, order[:, : self.keep], 1.0)
        cells = cells.view(n, 1, self.grid, self.grid)
        rows = torch.arange(h) * self.grid // h
        cols = torch.arange(w) * self.grid // w
        return cells[:, :, rows][:, :, :, cols]

    def partial_trigger(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Training-time trigger: ``keep`` pieces at ``train_alpha``; uint8 in, uint8 out."""
        m = self.piece_masks(len(x), *x.shape[-2:], gen) * self.train_alpha
        return quantize(stamp(to_float(x), m, self.pattern.cpu()))

    def poison(self, train: ImageSet, ctx: AttackContext | None = None) -> ImageSet:
        poison = self.poison_index(train.y)
        rest = torch.ones(len(train.y), dtype=torch.bool)
        rest[poison] = False
        pool = torch.nonzero(rest).flatten()
        k = round(self.cover_rate * len(train.y))
        cover = pool[torch.randperm(len(pool), generator=self.generator(5))[:k]]
        x, y = train.x.clone(), train.y.clone()
        gen = self.generator(6)
        x[poison] = self.partial_trigger(train.x[poison], gen)
        x[cover] = self.partial_trigger(train.x[cover], gen)
        y[poison] = self.target
        self.info.update(poisoned=len(poison), cover=len(cover))
        return ImageSet(x, y)
