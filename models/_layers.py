"""Activation-layer construction and enumeration shared by all architectures."""

from __future__ import annotations

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


def make_act(name: str) -> nn.Module:
    """A fresh activation module from its torch.nn class name."""
    return act_class(name)()


def activation_layers(
    model: nn.Module, types: tuple[type[nn.Module], ...] = ELEMENTWISE_ACTIVATIONS
) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of every activation module of the given types, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, types)]
