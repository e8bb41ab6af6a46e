"""Any timm architecture by name, randomly initialised (no hub downloads at run time)."""

from __future__ import annotations

import timm
import torch.nn as nn


def timm_model(name: str, num_classes: int = 10, **kwargs: object) -> nn.Module:
    if name not in timm.list_models():
        raise ValueError(f"unknown timm model {name!r}; see timm.list_models()")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
