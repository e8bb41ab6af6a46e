"""Forward hooks on named layers, and the "last layer of each stage" every architecture has.

NAD distils attention at the ends of the last stages; other defenses read intermediate outputs. Stages
are found by running one probe image: the activation layers in the order they execute, grouped by the
spatial size of their output; the last of each size ends a stage (ResNet's layer1..4, VGG's blocks,
MobileNet's resolutions) with no per-architecture code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

from models._layers import activation_layers


@contextmanager
def capture(model: nn.Module, names: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, ``outputs[name]`` holds the latest output of each named submodule."""
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(n).register_forward_hook(lambda _m, _i, o, n=n: outputs.__setitem__(n, o))
        for n in names
    ]
    try:
        yield outputs
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def stage_ends(model: nn.Module, image_shape: tuple[int, ...], count: int) -> list[str]:
    """Names of the activation layers that end the last ``count`` spatial stages, in execution order."""
    layers = activation_layers(model)
    order: list[tuple[str, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: order.append((n, tuple(o.shape[2:]))))
             for n, m in layers]  # fmt: skip
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.rand(1, *image_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    ends: dict[tuple[int, ...], str] = {}
    for name, size in order:
        if len(size) == 2:  # feature maps only
            ends.pop(size, None)
            ends[size] = name  # re-inserted: the dict keeps the order of each size's LAST layer
    names = list(ends.values())
    if len(names) < count:
        raise ValueError(f"{type(model).__name__} has {len(names)} spatial stages, fewer than {count}")
    return names[-count:]
