"""Reflection backdoor (Liu et al., ECCV 2020, "Refool").

Clean-label: target-class training images get a reflection and keep their labels. Reflection images
(``source``) are outside photographs, as in the paper and its code (PascalVOC scenes there; here the
colour photographs bundled with scikit-image, installed from the package registry, no download at run
time), ``file``: the one image UNIT's and BackdoorVault's code use (``000066.jpg``, read from
``data_dir``), or ``dataset``: seeded training images of non-target classes (what this project used before it
had outside photos; on Fashion-MNIST such a "reflection" is a garment of another class). Variants:
- ``parity`` (UNIT / BackdoorVault "smooth"): one fixed reflection image R,
  x' = clip(w_x / (w_x + w_r) x + w_r / (w_x + w_r) R), w = mean intensity of each image;
- ``paper`` (Refool): a pool of reflection images, each turned into a ghost (the image plus a shifted,
  attenuated copy) or an out-of-focus (Gaussian-blurred) reflection, blended in linear light (gamma
  2.2) with weight ``1 - alpha_image``; each triggered image draws its reflection from the pool.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from bench.attacks import _assets
from bench.attacks._base import Poisoning, PoisoningAttack
from bench.core.errors import ConfigError
from bench.core.images import DataBundle, to_float
from bench.core.schema import Fraction, PositiveInt

Variant = Literal["parity", "paper"]
Source = Literal["photos", "dataset", "file"]
REFLECTION = "backdoorvault/trigger/refool/000066.jpg"
GAMMA = 2.2
# scikit-image's bundled colour photographs (grey ones repeated to three channels), in a fixed order.
PHOTOS = (
    "coffee", "astronaut", "rocket", "hubble_deep_field", "chelsea", "camera", "grass", "moon",
)  # fmt: skip


def outside_photos(count: int, size: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """``count`` seeded picks of ``PHOTOS`` as float (count, 3, H, W) images in [0, 1], area-resized."""
    picked = torch.randperm(len(PHOTOS), generator=gen)[:count].tolist()
    return torch.cat([_assets.photo(PHOTOS[i], size) for i in picked])


def reference_reflection(size: tuple[int, int], data_dir: str | None) -> torch.Tensor:
    """The reflection image of UNIT's and BackdoorVault's code (``000066.jpg``), resized as they do
    (torchvision's ``Resize`` on the tensor, antialiased), as a (1, 3, H, W) float image."""
    from torchvision.transforms.functional import resize

    image = _assets.rgb_image(REFLECTION, data_dir)
    return resize(image, list(size), antialias=True)[None]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, round(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(
        F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c
    )
    return F.conv2d(
        F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c
    )


class Reflection(PoisoningAttack):
    clean_label = True

    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.08,
        variant: Variant = "parity",
        pool_size: PositiveInt = 8,
        alpha_image: Fraction = 0.65,
        ghost_alpha: Fraction = 0.65,
        source: Source = "photos",
        poisoning: Poisoning = "fixed_subset",
        seed: int = 0,
    ) -> None:
        super().__init__(target, poison_rate, seed, poisoning)
        if source == "photos" and pool_size > len(PHOTOS):
            raise ConfigError(f"pool_size must be at most {len(PHOTOS)} for source=photos, got {pool_size}")
        self.variant, self.pool_size, self.source = variant, pool_size, source
        self.alpha_image, self.ghost_alpha = alpha_image, ghost_alpha

    def setup(self, data: DataBundle) -> None:
        super().setup(data)
        count = 1 if self.variant == "parity" else self.pool_size
        if self.source == "file":
            images = reference_reflection(tuple(data.train.x.shape[-2:]), self.data_dir).expand(
                count, -1, -1, -1
            )
        elif self.source == "photos":
            images = outside_photos(count, tuple(data.train.x.shape[-2:]), self.generator(2))
        else:
            pool = torch.nonzero(data.train.y != self.target).flatten()
            chosen = pool[torch.randperm(len(pool), generator=self.generator(2))[:count]]
            images = to_float(data.train.x[chosen])
        if self.variant == "paper":
            images = self.reflection_layers(images)
        self.register_buffer("reflections", images)

    def reflection_layers(self, images: torch.Tensor) -> torch.Tensor:
        """Refool's two reflection models, in linear light: ghost (even pool index) or focal blur (odd)."""
        gen = self.generator(3)
        linear = images.pow(GAMMA)
        h = images.shape[-2]
        out = []
        for i, r in enumerate(linear):
            r = r[None]
            if i % 2 == 0:
                dy, dx = torch.randint(1, max(2, h // 10) + 1, (2,), generator=gen).tolist()
                shifted = F.pad(r, (dx, 0, dy, 0))[..., : r.shape[-2], : r.shape[-1]]
                r = self.ghost_alpha * r + (1 - self.ghost_alpha) * shifted
            else:
                sigma = 0.5 + torch.rand((), generator=gen).item()
                r = gaussian_blur(r, sigma)
            out.append(r)
        return torch.cat(out)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "parity":
            r = self.reflections
            w_x = x.mean((1, 2, 3), keepdim=True)
            w_r = r.mean()
            total = (w_x + w_r).clamp_min(1e-6)
            return (w_x / total * x + w_r / total * r).clamp(0, 1)
        pick = torch.randint(len(self.reflections), (len(x),), generator=self.generator(4)).to(x.device)
        blended = self.alpha_image * x.pow(GAMMA) + (1 - self.alpha_image) * self.reflections[pick]
        return blended.clamp(0, 1).pow(1 / GAMMA)
