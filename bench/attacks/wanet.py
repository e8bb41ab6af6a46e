"""WaNet (Nguyen & Tran, ICLR 2021, "WaNet - Imperceptible Warping-based Backdoor Attack").

The trigger is a fixed smooth warp: identity grid + s * noise_grid / H, where noise_grid is a k x k
field from U(-1, 1), normalised by its mean absolute value and bicubically upsampled; images are
resampled with ``grid_sample`` (bilinear, align_corners=True). Poisoning is in-batch: in every training
batch a ``poison_rate`` share is warped and relabelled to the target, and ``cross_ratio`` times as many
are warped with the trigger grid plus fresh per-sample noise of up to one pixel but keep their TRUE
labels ("noise mode", which keeps the warp from being learnt as any warp). The engine augments after
this hook, as WaNet does (its crop/rotation/flip; here the recipe's crop and flip, no rotation).
With ``trigger_file`` the two grids are the reference ones UNIT's and BackdoorVault's code load
(``identity_grid.pt``, ``noise_grid.pt``, read from ``data_dir``), else a seeded draw.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.attacks import _assets
from bench.attacks._base import Attack
from bench.core.errors import ConfigError
from bench.core.schema import Fraction, Positive, Range


def warp(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(x, grid.expand(len(x), -1, -1, -1), mode="bilinear", align_corners=True)


GRIDS = {name: f"backdoorvault/trigger/wanet/{name}_grid.pt" for name in ("noise", "identity")}


class WaNet(Attack):
    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.1,
        cross_ratio: float = 2.0,  # x poison_rate, >= 0
        k: Annotated[int, Range(2)] = 4,
        s: Positive = 0.5,
        grid_rescale: Positive = 1.0,
        trigger_file: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(target, seed)
        if poison_rate * (1 + cross_ratio) > 1:
            raise ConfigError(f"poison_rate * (1 + cross_ratio) must be at most 1, got {poison_rate} * "
                              f"(1 + {cross_ratio})")  # fmt: skip
        self.poison_rate = poison_rate
        self.cross_ratio, self.k, self.s, self.grid_rescale = cross_ratio, k, s, grid_rescale
        self.trigger_file = trigger_file

    def build(self, image_shape: torch.Size) -> None:
        _, h, w = image_shape
        if self.trigger_file:  # the reference grids (UNIT's and BackdoorVault's k = 4 draw), 32 x 32
            _assets.needs_rgb32(image_shape, "wanet")
            noise, identity = (
                torch.load(
                    _assets.trigger_file(GRIDS[name], self.data_dir), map_location="cpu", weights_only=True
                )
                for name in ("noise", "identity")
            )
        else:
            noise = torch.rand(1, 2, self.k, self.k, generator=self.generator(2)) * 2 - 1
            noise = noise / noise.abs().mean()
            noise = F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
            rows, cols = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
            identity = torch.stack((cols, rows), -1)[None]  # grid_sample wants (x = column, y = row)
        self.register_buffer("noise_grid", noise)
        self.register_buffer("identity_grid", identity)
        self.register_buffer("grid", ((identity + self.s * noise / h) * self.grid_rescale).clamp(-1, 1))
        self.noise_gen = self.generator(3)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return warp(x, self.grid)

    def noise_mode(self, x: torch.Tensor) -> torch.Tensor:
        """The trigger warp plus fresh per-sample noise (at most one pixel), for true-label samples."""
        h = x.shape[-2]
        jitter = (torch.rand((len(x), *self.grid.shape[1:]), generator=self.noise_gen) * 2 - 1) / h
        return F.grid_sample(x, (self.grid + jitter.to(x.device)).clamp(-1, 1), mode="bilinear",
                             align_corners=True)  # fmt: skip

    def batch_hook(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n_bd = int(len(x) * self.poison_rate)
        n_ns = int(n_bd * self.cross_ratio)
        x, y = x.clone(), y.clone()
        x[:n_bd] = self.apply(x[:n_bd])
        y[:n_bd] = self.target
        x[n_bd : n_bd + n_ns] = self.noise_mode(x[n_bd : n_bd + n_ns])
        return x, y
