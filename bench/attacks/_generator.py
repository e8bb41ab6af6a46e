"""The networks generator-based attacks share, and the image-similarity loss they train with.

One conv encoder-decoder (a small U-Net) serves as IA's pattern generator G and mask network M, LIRA's
trigger function T, ISSBA's StegaStamp encoder, DFST's CycleGAN generators and its feature injectors;
only its channel counts and output activation differ. Instance normalisation (not batch norm) keeps a
generator's output for an image independent of the rest of the batch, so the test-time trigger of an
image is exactly its training-time one.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

OUTPUTS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "linear": nn.Identity}


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.InstanceNorm2d(cout, affine=True),
        nn.LeakyReLU(0.2),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.InstanceNorm2d(cout, affine=True),
        nn.LeakyReLU(0.2),
    )


class UNet(nn.Module):
    """Encoder-decoder with skip connections: ``depth`` halvings of the resolution, ``width`` channels
    at full resolution doubling per level; any image size (skips are resized when a size is odd)."""

    def __init__(
        self, in_channels: int, out_channels: int, width: int = 16, depth: int = 2, output: str = "sigmoid"
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"UNet output must be one of {sorted(OUTPUTS)}, got {output!r}")
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            [conv_block(in_channels, chans[0])] + [conv_block(chans[i], chans[i + 1]) for i in range(depth)]
        )
        self.up = nn.ModuleList(
            [conv_block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth))]
        )
        self.head = nn.Sequential(nn.Conv2d(chans[0], out_channels, 1), OUTPUTS[output]())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = block(torch.cat([x, skip], 1))
        return self.head(x)


def step_own(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One step of ``optimizer`` on the gradient of ``loss`` with respect to its own parameters only: the
    classifier the loss runs through keeps the gradients it has (an attack's network trained inside or
    beside the classifier's training)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for p, grad in zip(params, torch.autograd.grad(loss, params), strict=True):
        p.grad = grad
    optimizer.step()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 5, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity of two batches in [0, 1] (Gaussian window, per channel); in (-1, 1]."""
    c = a.shape[1]
    coords = torch.arange(window, dtype=a.dtype, device=a.device) - window // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, padding=window // 2, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).mean()
