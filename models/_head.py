"""The pooled-linear classifier head shared by the CNNs in this package."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PooledClassifier(nn.Module):
    """``forward = head(global_avg_pool(forward_features(x)))``.

    Subclasses implement ``forward_features`` and name their final linear layer in ``head_name``
    (``linear``, ``classifier``, ``fc``: the names research checkpoints use).
    """

    head_name = "linear"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.head_name)(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def classifier_head(model: nn.Module) -> nn.Linear:
    """The final linear layer of any model here (through ``Normalized``), for attacks and defenses that
    read or hook the penultimate features. timm models: their ``get_classifier()``."""
    net = getattr(model, "net", model)
    if isinstance(net, PooledClassifier):
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
