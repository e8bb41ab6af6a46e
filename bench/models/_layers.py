"""Activation-module construction shared by all architectures (one module per use, so defenses can hook
each activation layer)."""

from __future__ import annotations

import torch.nn as nn

from bench.core.network import act_class


def make_act(name: str) -> nn.Module:
    """A fresh activation module from its torch.nn class name."""
    return act_class(name)()
