"""ISSBA (Li et al., ICCV 2021, "Invisible Backdoor Attack with Sample-Specific Triggers").

A StegaStamp-style encoder hides one fixed secret bit string in each image as an additive residual:
x' = clip(x + E(secret, x)), so the trigger differs per image. Encoder and decoder are trained on the
cell's own training images (random secrets per batch): BCE of the decoded bits, plus an L2 penalty on the
residual and an SSIM term for its visibility, the image terms off for the first quarter of training and
ramped in over the second, as StegaStamp does. Between encoder and decoder, StegaStamp's training
distorts the encoded image (noise, brightness, contrast, colour, blur, JPEG), which is what makes its
residual large enough to see (ISSBA reports about 27 dB PSNR); here the differentiable per-image Gaussian
noise, brightness shift and contrast scaling at StegaStamp's maxima (``noise_std``, ``brightness``,
``contrast``), ramped in over the first quarter (0 turns each off; colour, blur and JPEG are left out).
StegaStamp's LPIPS term needs downloaded network weights; SSIM replaces it here.
Dirty-label poisoning (``poison_rate`` of the whole training set, non-target images, relabelled).

An encoder whose decoder cannot read the secret back has collapsed into a universal perturbation, so the
attack measures the decoder's bit accuracy on images held out from the encoder's training and, below
``bit_accuracy_floor``, says so in ``info["warnings"]``: every record of the victim then carries the
warning, and Table 1 marks its cells. The record also keeps the residual's size and its
sample specificity: the share of its energy that is not the mean residual (0 would be one universal
pattern).
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.attacks._base import AttackContext, PoisoningAttack, need_context
from bench.attacks._generator import UNet, ssim
from bench.core.engine import progress_bar
from bench.core.images import ImageSet, to_float
from bench.core.schema import Fraction, Positive, PositiveInt, Range


class StegaStamp(nn.Module):
    """Encoder (secret plane + image -> residual) and decoder (image -> bit logits)."""

    def __init__(self, channels: int, size: tuple[int, int], bits: int, width: int) -> None:
        super().__init__()
        self.size = size
        self.secret_plane = nn.Linear(bits, size[0] * size[1])
        self.encoder = UNet(channels + 1, channels, width, output="linear")
        self.decoder = nn.Sequential(
            nn.Conv2d(channels, width, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * width, bits),
        )  # fmt: skip

    def residual(self, x: torch.Tensor, secret: torch.Tensor) -> torch.Tensor:
        plane = self.secret_plane(secret.expand(len(x), -1)).view(len(x), 1, *self.size)
        return self.encoder(torch.cat([x, plane], 1))

    def encode(self, x: torch.Tensor, secret: torch.Tensor) -> torch.Tensor:
        return (x + self.residual(x, secret)).clamp(0, 1)


class ISSBA(PoisoningAttack):
    def __init__(
        self,
        target: int = 0,
        poison_rate: Fraction = 0.1,
        bits: PositiveInt = 32,
        steps: PositiveInt = 4000,
        batch_size: PositiveInt = 64,
        lr: Positive = 1e-3,
        l2_weight: float = 2.0,
        ssim_weight: float = 1.0,
        bit_accuracy_floor: Annotated[float, Range(0.5, 1, low_closed=False)] = 0.9,
        holdout: PositiveInt = 1000,
        width: PositiveInt = 16,
        noise_std: float = 0.02,
        brightness: float = 0.3,
        contrast: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__(target, poison_rate, seed)
        self.bits, self.steps, self.batch_size, self.lr = bits, steps, batch_size, lr
        self.l2_weight, self.ssim_weight = l2_weight, ssim_weight
        self.bit_accuracy_floor, self.holdout, self.width = bit_accuracy_floor, holdout, width
        self.noise_std, self.brightness, self.contrast = noise_std, brightness, contrast

    def build(self, image_shape: torch.Size) -> None:
        c, h, w = image_shape
        with self.seeded(4):
            self.codec = StegaStamp(c, (h, w), self.bits, self.width)
        self.register_buffer(
            "secret", torch.randint(0, 2, (1, self.bits), generator=self.generator(2)).float()
        )

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.codec.encode(x, self.secret)

    def distort(self, x: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
        """StegaStamp's differentiable distortions, each drawn per image up to ``strength`` x its maximum."""
        n = len(x)

        def uniform(low: float, high: float) -> torch.Tensor:
            return (low + (high - low) * torch.rand(n, 1, 1, 1, generator=gen)).to(x.device)

        mean = x.mean((1, 2, 3), keepdim=True)
        x = (x - mean) * uniform(1 - strength * self.contrast, 1 + strength * self.contrast) + mean
        x = x + uniform(-strength * self.brightness, strength * self.brightness)
        noise = torch.randn(x.shape, generator=gen).to(x.device)
        return (x + noise * uniform(0, strength * self.noise_std)).clamp(0, 1)

    def train_codec(self, codec: nn.Module, data: ImageSet, ctx: AttackContext) -> None:
        """StegaStamp training on all but the last ``holdout`` training images, random secrets. As in
        StegaStamp, the image losses are off at first (the decoder must learn to read before the residual
        is squeezed) and ramp in linearly over the second quarter of the steps."""
        images = data.x[: len(data) - self.holdout]
        opt = torch.optim.Adam(codec.parameters(), lr=self.lr)
        gen = self.generator(5)
        codec.to(ctx.device).train()
        for step in progress_bar(range(self.steps), desc="issba encoder/decoder", enabled=ctx.progress):
            idx = torch.randint(len(images), (self.batch_size,), generator=gen)
            x = to_float(images[idx].to(ctx.device))
            secret = torch.randint(0, 2, (len(x), self.bits), generator=gen).float().to(ctx.device)
            residual = codec.residual(x, secret)
            encoded = (x + residual).clamp(0, 1)
            ramp = min(1.0, max(0.0, 4 * step / max(self.steps, 1) - 1))  # 0 for a quarter, then up
            distorted = self.distort(encoded, min(1.0, 4 * step / max(self.steps, 1)), gen)
            loss = F.binary_cross_entropy_with_logits(codec.decoder(distorted), secret)
            loss = loss + ramp * (
                self.l2_weight * residual.pow(2).mean() + self.ssim_weight * (1 - ssim(encoded, x))
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    @torch.no_grad()
    def check_codec(self, held_out: torch.Tensor, device: torch.device) -> None:
        """Bit accuracy of the fixed secret on held-out images and the residual statistics, in ``info``."""
        x = to_float(held_out.to(device))
        encoded = self.apply(x)
        bits = (self.codec.decoder(encoded) > 0).float()
        accuracy = (bits == self.secret).float().mean().item()
        residual = encoded - x
        energy = residual.pow(2).mean()
        specific = (residual - residual.mean(0, keepdim=True)).pow(2).mean()
        self.info.update(
            bit_accuracy=round(accuracy, 4),
            residual_rms=round(energy.sqrt().item(), 4),
            psnr_db=round(-10 * math.log10(max(energy.item(), 1e-12)), 2),
            residual_linf_mean=round(residual.abs().amax(dim=(1, 2, 3)).mean().item(), 4),
            residual_specificity=round((specific / energy.clamp_min(1e-12)).item(), 4),
        )
        if accuracy < self.bit_accuracy_floor:  # flagged in every record of this victim (bench.run.records)
            self.info["warnings"] = [
                f"issba: the decoder reads the secret back with bit accuracy {accuracy:.3f} < "
                f"attack.bit_accuracy_floor={self.bit_accuracy_floor}: the encoder has not learnt to hide "
                "it, so the trigger is a near-universal perturbation, not ISSBA's (more attack.steps)"
            ]

    def poison(self, train: ImageSet, ctx: AttackContext | None = None) -> ImageSet:
        ctx = need_context(self, ctx)
        spec = {
            "bits": self.bits, "steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
            "l2": self.l2_weight, "ssim": self.ssim_weight, "holdout": self.holdout, "width": self.width,
        }  # fmt: skip
        distortions = {"noise_std": self.noise_std, "brightness": self.brightness, "contrast": self.contrast}
        if any(distortions.values()):  # codecs trained before distortions existed keep their cache keys
            spec["distortions"] = distortions
        ctx.models.network(
            "issba_stegastamp", spec, self.codec, lambda codec, data: self.train_codec(codec, data, ctx)
        )
        self.codec.requires_grad_(False)
        self.check_codec(train.x[len(train) - self.holdout :], ctx.device)
        return super().poison(train, ctx)
