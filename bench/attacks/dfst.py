"""DFST (Cheng et al., AAAI 2021, "Deep Feature Space Trojan Attack of Neural Networks by Controlled
Detoxification").

The trigger is a style: x' = G(x), G the A->B generator of a CycleGAN trained between the cell's
training images (A) and a "sunrise" style set (B). ``style=sunrise``: BackdoorVault's CycleGAN
(helper/dfst_helper.py, models/cyclegan.py: ResNet generators with pixel-shuffle upsampling, patch
discriminators, MSE discriminator and L1 fooling, cycle and identity losses) on its 250 real sunrise
photographs, read from ``data_dir``. ``style=procedural`` (the committed victims'): a U-Net CycleGAN to
procedural scenes (``sunrise_images``: a sky gradient, a sun disk, its glow, a dark ground), which has no
texture and makes G erase the image (measured: the clean model reads its output at chance). Poisoning is
in-batch and dirty-label: ``poison_rate`` of every batch is stylised and relabelled to the target.

Controlled detoxification keeps the backdoor in deep features instead of simple colour statistics: after
every epoch but the last, the attack finds the ``neuron_ratio`` most compromised channels of the model's
last stage (largest mean activation gap between stylised and clean images on a ``detox_share`` probe of
the training set), trains a fresh feature injector (the shared U-Net, as in the paper) on the probe to
excite those channels and reach the target while staying close to the input (CE - w_ssim SSIM - w_detox
activation, the 2024 reference's objective), and in the following epoch ``poison_rate`` of every batch
become detox samples: (1 - alpha) x + alpha * injector(x) with their TRUE labels. Without this it would be
a plain style trigger. The record lists the rounds and the channels found.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.attacks import _assets
from bench.attacks._base import Attack, AttackContext, Checkpoint, need_context
from bench.attacks._generator import UNet, ssim, step_own
from bench.core.engine import augment, progress_bar
from bench.core.errors import ConfigError
from bench.core.images import DataBundle, ImageSet, to_float
from bench.core.network import capture, stage_ends
from bench.core.schema import Fraction, Positive, PositiveInt, Range


def sunrise_images(n: int, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    """``n`` procedural sunrise scenes in [0, 1]; grey (the luminance) when ``shape`` has one channel."""
    c, h, w = shape
    rows = torch.linspace(0, 1, h).view(1, h, 1)
    cols = torch.linspace(0, 1, w).view(1, 1, w)
    r = torch.rand(n, 6, generator=gen)
    horizon = (0.55 + 0.25 * r[:, 0]).view(n, 1, 1)
    top = torch.stack([0.25 + 0.2 * r[:, 1], 0.1 + 0.1 * r[:, 1], 0.35 + 0.2 * r[:, 2]], 1)  # purple
    low = torch.stack([0.95 + 0.05 * r[:, 2], 0.45 + 0.2 * r[:, 3], 0.1 + 0.1 * r[:, 3]], 1)  # orange
    t = (rows / horizon).clamp(0, 1)[:, None]  # (n, 1, h, 1): 0 at the top, 1 at the horizon
    sky = top[:, :, None, None] * (1 - t) + low[:, :, None, None] * t
    sun_x, radius = (0.2 + 0.6 * r[:, 4]).view(n, 1, 1), (0.06 + 0.08 * r[:, 5]).view(n, 1, 1)
    dist = ((cols - sun_x) ** 2 + (rows - horizon + radius * 0.5) ** 2).sqrt()
    sun_colour = torch.tensor([1.0, 0.9, 0.6]).view(1, 3, 1, 1)
    glow = torch.exp(-((dist / (3 * radius)) ** 2))[:, None]
    disk = (dist < radius).float()[:, None]
    img = sky * (1 - glow) + sun_colour * glow
    img = img * (1 - disk) + sun_colour * disk
    ground = (rows > horizon).float()[:, None]
    img = img * (1 - ground) + 0.15 * low[:, :, None, None] * ground
    img = img.expand(n, 3, h, w).clamp(0, 1)
    if c == 1:
        return (img * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if c != 3:
        raise ConfigError(f"dfst's sunrise style needs 1- or 3-channel images, got {c}")
    return img


class PatchDiscriminator(nn.Sequential):
    def __init__(self, channels: int, width: int) -> None:
        super().__init__(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.InstanceNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 3, 1, 1),
        )  # fmt: skip


class CycleGAN(nn.Module):
    """Generators A->B (the trigger) and B->A with their patch discriminators."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.g_ab = UNet(channels, channels, width, output="sigmoid")
        self.g_ba = UNet(channels, channels, width, output="sigmoid")
        self.d_a = PatchDiscriminator(channels, width)
        self.d_b = PatchDiscriminator(channels, width)


# -- style=sunrise: BackdoorVault's CycleGAN (models/cyclegan.py, helper/dfst_helper.py) ----------------
SUNRISE_BATCH, SUNRISE_LR = 128, 2e-4  # its loaders' batch and Adam's rate, betas (0.5, 0.999)


class ResidualBlock(nn.Module):
    """conv-IN-ReLU-conv, then ReLU(IN(. + x))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1), nn.InstanceNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1),
        )  # fmt: skip
        self.norm = nn.InstanceNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.body(x) + x))


def resnet_generator(channels: int = 32, blocks: int = 9) -> nn.Sequential:
    """7x7 stem, two stride-2 downsamplings, ``blocks`` residual blocks, two pixel-shuffle upsamplings,
    a 7x7 head to RGB in [0, 1]; takes normalised images."""
    c = channels
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3), nn.Conv2d(3, c, 7), nn.InstanceNorm2d(c), nn.ReLU(True),
        nn.Conv2d(c, 2 * c, 3, 2, 1), nn.InstanceNorm2d(2 * c), nn.ReLU(True),
        nn.Conv2d(2 * c, 4 * c, 3, 2, 1), nn.InstanceNorm2d(4 * c), nn.ReLU(True),
    ]  # fmt: skip
    layers += [ResidualBlock(4 * c) for _ in range(blocks)]
    layers += [
        nn.ConvTranspose2d(4 * c, 8 * c, 3, 1, 1), nn.PixelShuffle(2),
        nn.InstanceNorm2d(2 * c), nn.ReLU(True),
        nn.ConvTranspose2d(2 * c, 4 * c, 3, 1, 1), nn.PixelShuffle(2),
        nn.InstanceNorm2d(c), nn.ReLU(True),
        nn.ReflectionPad2d(3), nn.Conv2d(c, 3, 7), nn.Sigmoid(),
    ]  # fmt: skip
    return nn.Sequential(*layers)


def patch_discriminator(channels: int = 64) -> nn.Sequential:
    """Four stride-2/1 convolutions to a 2 x 2 map of sigmoid scores for a 32 x 32 normalised image."""
    c = channels
    return nn.Sequential(
        nn.Conv2d(3, c, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
        nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.InstanceNorm2d(2 * c), nn.LeakyReLU(0.2, True),
        nn.Conv2d(2 * c, 4 * c, 4, 2, 1, bias=False), nn.InstanceNorm2d(4 * c), nn.LeakyReLU(0.2, True),
        nn.Conv2d(4 * c, 8 * c, 4, 1, 1), nn.InstanceNorm2d(8 * c), nn.LeakyReLU(0.2, True),
        nn.Conv2d(8 * c, 1, 4, 1, 1), nn.Sigmoid(),
    )  # fmt: skip


class SunriseCycleGAN(nn.Module):
    """A->B (the trigger: training images to sunrise style) and B->A generators and both discriminators,
    on images normalised with the dataset's statistics (the generators output [0, 1])."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.g_ab, self.g_ba = resnet_generator(), resnet_generator()
        self.d_a, self.d_b = patch_discriminator(), patch_discriminator()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def stylise(self, x: torch.Tensor) -> torch.Tensor:
        """The trigger on images in [0, 1]: G_ab of the normalised image, in [0, 1]."""
        return self.g_ab(self.normalize(x))

    def step(
        self, x_a: torch.Tensor, x_b: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, float]:
        """One update of BackdoorVault's loop on normalised batches: each discriminator by MSE to 1 on its
        domain's images and 0 on the other generator's fakes, then both generators by L1 fooling, cycle
        and identity losses (all weighted 1)."""
        norm = self.normalize
        b_fake, a_fake = norm(self.g_ab(x_a)), norm(self.g_ba(x_b))
        scores_a, scores_b = self.d_a(x_a), self.d_b(x_b)
        real, fake = torch.ones_like(scores_a), torch.zeros_like(scores_a)
        loss_d = (F.mse_loss(scores_a, real) + F.mse_loss(self.d_a(a_fake.detach()), fake)
                  + F.mse_loss(scores_b, real) + F.mse_loss(self.d_b(b_fake.detach()), fake))  # fmt: skip
        for name in ("d_a", "d_b"):
            optimizers[name].zero_grad(set_to_none=True)
        loss_d.backward()
        for name in ("d_a", "d_b"):
            optimizers[name].step()
        fool = F.l1_loss(self.d_a(a_fake), real) + F.l1_loss(self.d_b(b_fake), real)
        cycle = F.l1_loss(norm(self.g_ba(b_fake)), x_a) + F.l1_loss(norm(self.g_ab(a_fake)), x_b)
        identity = F.l1_loss(norm(self.g_ab(x_b)), x_b) + F.l1_loss(norm(self.g_ba(x_a)), x_a)
        loss_g = fool + cycle + identity
        for name in ("g_ab", "g_ba"):
            optimizers[name].zero_grad(set_to_none=True)
        loss_g.backward()
        for name in ("g_ab", "g_ba"):
            optimizers[name].step()
        return {"d": loss_d.item(), "fool": fool.item(), "cycle": cycle.item(), "identity": identity.item()}


def lsgan(scores: torch.Tensor, real: bool) -> torch.Tensor:
    return F.mse_loss(scores, torch.full_like(scores, 1.0 if real else 0.0))


# procedural: the committed victims' stand-in (a U-Net CycleGAN to procedural scenes; it erases the image,
# measured); sunrise: BackdoorVault's CycleGAN on its 250 real sunrise photographs
Style = Literal["procedural", "sunrise"]


class DFST(Attack):
    def __init__(
        self,
        target: int = 0,
        poison_rate: Annotated[float, Range(0, 0.5, low_closed=False)] = 0.05,  # as many detox samples follow
        style_steps: PositiveInt = 3000,
        style_batch: PositiveInt = 32,
        style_lr: Positive = 2e-4,
        cycle_weight: float = 10.0,
        detox: bool = True,
        neuron_ratio: Fraction = 0.01,
        detox_share: Fraction = 0.03,
        detox_epochs: int = 10,
        detox_lr: Positive = 1e-2,
        alpha: Fraction = 0.6,
        w_ssim: float = 0.1,
        w_detox: float = 0.3,
        width: PositiveInt = 16,
        style: Style = "procedural",
        seed: int = 0,
    ) -> None:
        super().__init__(target, seed)
        self.style_kind, self.poison_rate = style, poison_rate
        self.neuron_ratio, self.detox_share, self.alpha = neuron_ratio, detox_share, alpha
        self.style_steps, self.style_batch, self.style_lr = style_steps, style_batch, style_lr
        self.cycle_weight, self.detox, self.detox_epochs, self.detox_lr = (
            cycle_weight,
            detox,
            detox_epochs,
            detox_lr,
        )
        self.w_ssim, self.w_detox, self.width = w_ssim, w_detox, width
        self.probe: torch.Tensor | None = None  # uint8 images the detoxification analyses
        self.total_epochs = 0  # of the victim's training, known once poisoning starts
        self.injector_ready = False

    def setup(self, data: DataBundle) -> None:
        self.mean, self.std = data.mean, data.std  # the sunrise CycleGAN works on normalised images
        super().setup(data)

    def build(self, image_shape: torch.Size) -> None:
        c = image_shape[0]
        self.image_shape = image_shape
        with self.seeded(4):
            if self.style_kind == "sunrise":
                _assets.needs_rgb32(image_shape, "dfst with style=sunrise")
                self.style = SunriseCycleGAN(self.mean, self.std)
            else:
                self.style = CycleGAN(c, self.width)
        with self.seeded(6):
            self.injector = UNet(c, c, self.width, output="sigmoid")
        self.injector_init = {k: v.clone() for k, v in self.injector.state_dict().items()}
        self.info.update(detox_rounds=0, compromised_neurons=[], injector_target_rate=[])

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.style.stylise(x) if self.style_kind == "sunrise" else self.style.g_ab(x)

    # -- the style generator (auxiliary, cached) -----------------------------------------------------
    def train_style(self, gan: nn.Module, data: ImageSet, ctx: AttackContext) -> None:
        """CycleGAN (LSGAN losses, cycle consistency) between the training images and sunrise scenes."""
        gen = self.generator(5)
        gan.to(ctx.device).train()
        opt_g = torch.optim.Adam(
            [*gan.g_ab.parameters(), *gan.g_ba.parameters()], self.style_lr, betas=(0.5, 0.999)
        )
        opt_d = torch.optim.Adam(
            [*gan.d_a.parameters(), *gan.d_b.parameters()], self.style_lr, betas=(0.5, 0.999)
        )
        for _ in progress_bar(range(self.style_steps), desc="dfst style CycleGAN", enabled=ctx.progress):
            a = to_float(data.x[torch.randint(len(data), (self.style_batch,), generator=gen)].to(ctx.device))
            b = sunrise_images(self.style_batch, self.image_shape, gen).to(ctx.device)
            fake_b, fake_a = gan.g_ab(a), gan.g_ba(b)
            loss_g = lsgan(gan.d_b(fake_b), True) + lsgan(gan.d_a(fake_a), True)
            loss_g = loss_g + self.cycle_weight * (
                (gan.g_ba(fake_b) - a).abs().mean() + (gan.g_ab(fake_a) - b).abs().mean()
            )
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            loss_d = (lsgan(gan.d_b(b), True) + lsgan(gan.d_b(fake_b.detach()), False)
                      + lsgan(gan.d_a(a), True) + lsgan(gan.d_a(fake_a.detach()), False)) / 2  # fmt: skip
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()

    def train_sunrise(
        self, gan: SunriseCycleGAN, data: ImageSet, ctx: AttackContext, checkpoint: Checkpoint | None = None
    ) -> dict[str, Any]:
        """BackdoorVault's loop, ``style_steps`` counted in its unit, epochs: each zips a shuffled pass over
        the training images (crop/flip-augmented, batches of 128) with one over the 250 sunrise photographs,
        so an epoch is two steps (128 and 122 images); Adam 2e-4, betas (0.5, 0.999), for each network.
        Hours on a CPU, so resumable: ``checkpoint`` gets the networks, optimisers and random generator
        after an epoch now and then, and a restart goes on from there to the same answer."""
        photos = _assets.sunrise_photos(self.data_dir)
        gen = self.generator(5)
        gan.to(ctx.device).train()
        optimizers = {name: torch.optim.Adam(getattr(gan, name).parameters(), SUNRISE_LR, betas=(0.5, 0.999))
                      for name in ("g_ab", "g_ba", "d_a", "d_b")}  # fmt: skip
        last: dict[str, float] = {}
        done = 0
        saved = checkpoint.load() if checkpoint is not None else None
        if saved is not None:
            gan.load_state_dict(saved["gan"])
            for name, optimizer in optimizers.items():
                optimizer.load_state_dict(saved["optimizers"][name])
            gen.set_state(saved["generator"])
            done, last = saved["epochs"], saved["losses"]
        epochs = progress_bar(range(done, self.style_steps), desc="dfst sunrise CycleGAN",
                              enabled=ctx.progress, total=self.style_steps - done)  # fmt: skip
        for epoch in epochs:
            order_a = torch.randperm(len(data), generator=gen)
            order_b = torch.randperm(len(photos), generator=gen)
            for start in range(0, min(len(data), len(photos)), SUNRISE_BATCH):
                b = to_float(photos[order_b[start : start + SUNRISE_BATCH]].to(ctx.device))
                a = to_float(data.x[order_a[start : start + len(b)]].to(ctx.device))
                a = augment(a, 4, True, gen)
                last = gan.step(gan.normalize(a), gan.normalize(b), optimizers)
            if checkpoint is not None and checkpoint.due() and epoch + 1 < self.style_steps:
                adam = {n: o.state_dict() for n, o in optimizers.items()}
                checkpoint.save({"gan": gan.state_dict(), "optimizers": adam, "generator": gen.get_state(),
                                 "epochs": epoch + 1, "losses": last})  # fmt: skip
        return {"final_losses": {k: round(v, 4) for k, v in last.items()}}  # kept with the cached network

    def poison(self, train: ImageSet, ctx: AttackContext | None = None) -> ImageSet:
        ctx = need_context(self, ctx)
        if self.style_kind == "sunrise":
            spec = {"style": "sunrise", "epochs": self.style_steps}
            ctx.models.network(
                "dfst_sunrise_cyclegan",
                spec,
                self.style,
                lambda gan, data, checkpoint: self.train_sunrise(gan, data, ctx, checkpoint),
                data_only=True,  # one CycleGAN for every architecture and recipe: hours on a CPU
                resumable=True,
            )
        else:
            spec = {"steps": self.style_steps, "batch": self.style_batch, "lr": self.style_lr,
                    "cycle": self.cycle_weight, "width": self.width}  # fmt: skip
            ctx.models.network(
                "dfst_cyclegan", spec, self.style, lambda gan, data: self.train_style(gan, data, ctx)
            )
        self.style.requires_grad_(False)
        k = max(1, math.ceil(self.detox_share * len(train)))
        self.probe = train.x[torch.randperm(len(train), generator=self.generator(7))[:k]]
        self.total_epochs = ctx.recipe.epochs
        return train

    # -- in-batch poisoning and detox samples --------------------------------------------------------
    def batch_hook(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = int(len(x) * self.poison_rate)
        with torch.no_grad():
            styled = self.apply(x[:n])
            detox = x[n : 2 * n]
            if self.injector_ready:
                detox = (1 - self.alpha) * detox + self.alpha * self.injector(detox)
        x = torch.cat([styled, detox, x[2 * n :]])
        y = torch.cat([torch.full_like(y[:n], self.target), y[n:]])
        return x, y

    def after_epoch(self, model: nn.Module, epoch: int) -> None:
        if self.detox and self.probe is not None and epoch < self.total_epochs - 1:
            self.detoxify(model)

    def compromised_neurons(self, model: nn.Module, layer: str, probe: torch.Tensor) -> list[int]:
        """Channels of ``layer`` whose mean activation rises most from clean to stylised probe images."""
        means = []
        with torch.no_grad(), capture(model, [layer]) as out:
            for images in (probe, self.apply(probe)):
                acts = []
                for i in range(0, len(images), 256):
                    model(images[i : i + 256])
                    acts.append(out[layer].float().mean(dim=(2, 3)))
                means.append(torch.cat(acts).mean(0))
        gap = means[1] - means[0]
        k = max(1, int(self.neuron_ratio * len(gap)))
        return gap.topk(k).indices.tolist()

    def detoxify(self, model: nn.Module) -> None:
        """One round: find the compromised channels, train a fresh feature injector towards them."""
        model.eval()
        device = next(model.parameters()).device
        probe = to_float(self.probe.to(device))
        layer = stage_ends(model, tuple(self.image_shape), 1)[0]
        neurons = self.compromised_neurons(model, layer, probe)
        self.injector.load_state_dict(self.injector_init)
        opt = torch.optim.Adam(self.injector.parameters(), lr=self.detox_lr, betas=(0.5, 0.9))
        gen = self.generator(8 + self.info["detox_rounds"])
        target = torch.full((len(probe),), self.target, device=device)
        hits = 0.0
        with capture(model, [layer]) as out:
            for _ in range(self.detox_epochs):
                hits = 0.0
                for idx in torch.randperm(len(probe), generator=gen).to(device).split(128):
                    x = probe[idx]
                    detox = (1 - self.alpha) * x + self.alpha * self.injector(x)
                    logits = model(detox)
                    excite = out[layer][:, neurons].mean()
                    loss = (
                        F.cross_entropy(logits, target[idx])
                        - self.w_ssim * ssim(detox, x)
                        - self.w_detox * excite
                    )
                    step_own(opt, loss)
                    hits += (logits.argmax(1) == self.target).sum().item()
        self.injector_ready = True
        self.info["detox_rounds"] += 1
        self.info["compromised_neurons"].append(neurons)
        self.info["injector_target_rate"].append(round(100 * hits / len(probe), 2))
        model.train()
