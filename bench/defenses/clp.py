"""CLP (Zheng et al., ECCV 2022, "Data-free Backdoor Removal based on Channel Lipschitzness"), written
from the paper and its official code (rkteddy/channel-Lipschitzness-based-pruning; also BackdoorBench's
``defense/clp.py``, read only).

Data-free: for every convolution followed directly by a batch-norm, each output channel's Lipschitz
upper bound is the largest singular value of its kernel, reshaped to (in_channels, k*k) and scaled by
|gamma / sigma| of its batch-norm channel (sigma = sqrt(running_var), as the official code takes it);
the channels whose bound exceeds the layer's mean + ``u`` std are pruned by zeroing their batch-norm
weight and bias. ``u`` = 3 is the paper's default (BackdoorBench sweeps u on the test set; we never read
test data). The pairing is found from the data flow of one forward pass, so a model whose batch-norms
are not fed by a convolution (pre-activation ResNets: the official code then silently pairs a BN with
the wrong convolution, its issue #2) is refused with the layer named.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from bench.core.errors import ConfigError
from bench.defenses._base import DefenderContext, Defense


def conv_bn_pairs(
    model: nn.Module, image_shape: tuple[int, ...], device: torch.device
) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d]]:
    """(batch-norm name, the convolution whose output it normalises, the batch-norm) for every
    BatchNorm2d, read from one forward pass of a zero image; ``ConfigError`` naming the first batch-norm
    whose input is not a convolution's output."""
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, tuple[nn.Conv2d, torch.Tensor]] = {}  # the output kept alive: its id stays its own
    fed: dict[nn.BatchNorm2d, nn.Conv2d | None] = {}

    def after_conv(conv: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        produced[id(output)] = (conv, output)

    def before_bn(bn: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        conv, _ = produced.get(id(inputs[0]), (None, None))
        fed[bn] = conv

    hooks = [m.register_forward_hook(after_conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [
        m.register_forward_pre_hook(before_bn) for m in model.modules() if isinstance(m, nn.BatchNorm2d)
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *image_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    pairs = []
    for bn, conv in fed.items():
        if conv is None:
            raise ConfigError(
                f"CLP needs every BatchNorm2d fed directly by a Conv2d (conv -> BN); {names[bn]} is not "
                f"(a pre-activation network?): choose a model with conv -> BN blocks"
            )
        pairs.append((names[bn], conv, bn))
    return pairs


def channel_lipschitz(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Each output channel's upper bound: the spectral norm of its (in_channels, k*k) kernel times
    |gamma / sqrt(running_var)|."""
    kernels = conv.weight.detach().float().flatten(2)  # (out, in, k*k)
    scale = (bn.weight.detach().float() / bn.running_var.float().sqrt()).abs()
    return torch.linalg.matrix_norm(kernels, ord=2) * scale


class CLP(Defense):
    def __init__(self, u: float = 3.0) -> None:
        self.u = u

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        pairs = conv_bn_pairs(model, tuple(ctx.data.x.shape[1:]), ctx.device)
        pruned: dict[str, int] = {}
        with torch.no_grad():
            for name, conv, bn in pairs:
                bounds = channel_lipschitz(conv, bn)
                flagged = bounds > bounds.mean() + self.u * bounds.std()
                bn.weight[flagged] = 0
                bn.bias[flagged] = 0
                if flagged.any():
                    pruned[name] = int(flagged.sum())
        channels = sum(bn.num_features for _, _, bn in pairs)
        info = {"u": self.u, "layers": len(pairs), "channels": channels, "pruned": sum(pruned.values()),
                "pruned_per_layer": pruned}  # fmt: skip
        if not pruned:
            info["action"] = "unchanged: no channel's bound above its layer's mean + u std"
        return model.eval(), info
