"""Any timm architecture by name, randomly initialised (no hub downloads at run time)."""

from __future__ import annotations

import timm
import torch.nn as nn

from bench.core.errors import ConfigError


def timm_model(name: str, num_classes: int = 10, width: float = 1.0, **kwargs: object) -> nn.Module:
    """``width`` is the suite's channel multiplier; timm architectures have no common one, so anything
    but 1 is refused (the settings' ``model_width`` does not reach a timm model: it keeps its own)."""
    if name not in timm.list_models():
        raise ConfigError(f"unknown timm model {name!r}; see timm.list_models()")
    if width != 1.0:
        raise ConfigError(f"model.width={width} has no meaning for timm models; add model.width=1")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
