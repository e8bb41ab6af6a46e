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
