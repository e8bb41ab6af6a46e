"""What attacks and defenses read from any network: its elementwise activation layers, the layer that
ends each spatial stage, outputs of named layers (forward hooks) and the classifier head with its input
features. Architecture-agnostic: found by module type and one probe forward, with no per-model code.

NAD distils attention at the ends of the last stages; other defenses read intermediate outputs. Stages
are found by running one probe image: the activation layers in the order they execute, grouped by the
spatial size of their output; the last of each size ends a stage (ResNet's layer1..4, VGG's blocks,
MobileNet's resolutions).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

# Modules that are elementwise activations. Defenses such as UNIT bound the output of each.
ELEMENTWISE_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish, nn.Softplus,
)  # fmt: skip


def act_class(name: str) -> type[nn.Module]:
    """An elementwise activation class from its torch.nn name (``ReLU``, ``GELU``, ``SiLU``, ...)."""
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, ELEMENTWISE_ACTIVATIONS)):
        names = ", ".join(c.__name__ for c in ELEMENTWISE_ACTIVATIONS)
        raise ValueError(f"unknown activation {name!r}; expected one of: {names}")
    return cls


def activation_layers(
    model: nn.Module, types: tuple[type[nn.Module], ...] = ELEMENTWISE_ACTIVATIONS
) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of every activation module of the given types, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, types)]


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


def classifier_head(model: nn.Module) -> nn.Linear:
    """The final linear layer of any model here (through ``Normalized``), for attacks and defenses that
    read or hook the penultimate features. timm models: their ``get_classifier()``."""
    net = getattr(model, "net", model)
    if isinstance(getattr(net, "head_name", None), str):  # bench.models.PooledClassifier
        head = getattr(net, net.head_name)
    elif hasattr(net, "get_classifier"):
        head = net.get_classifier()
    else:
        head = [m for m in net.modules() if isinstance(m, nn.Linear)][-1:]
        head = head[0] if head else None
    if not isinstance(head, nn.Linear):
        raise TypeError(f"{type(net).__name__} has no final nn.Linear classifier")
    return head


def head_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the classifier head (pooled penultimate features) for images ``x``."""
    captured: list[torch.Tensor] = []
    handle = classifier_head(model).register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[0]
