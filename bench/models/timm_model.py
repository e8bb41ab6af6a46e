"""Any timm architecture by name, randomly initialised or from a local weights file (no hub downloads at
run time)."""

from __future__ import annotations

from pathlib import Path

import timm
import torch.nn as nn

from bench.core.errors import ConfigError


def timm_model(
    name: str, num_classes: int = 10, width: float = 1.0, pretrained: str | None = None, **kwargs: object
) -> nn.Module:
    """``width`` is the suite's channel multiplier; timm architectures have no common one, so anything
    but 1 is refused (the settings' ``model_width`` does not reach a timm model: it keeps its own).

    ``pretrained``: a local file of the architecture's timm weights (e.g. ViT-B/16 on ImageNet, the UNIT
    paper's Section 5.2): timm loads it, adapting the position and patch embeddings to ``img_size`` and
    ``patch_size`` when they differ, and starts a fresh classifier head for ``num_classes``; the victim
    recipe then fine-tunes the whole network."""
    if name not in timm.list_models():
        raise ConfigError(f"unknown timm model {name!r}; see timm.list_models()")
    if width != 1.0:
        raise ConfigError(f"model.width={width} has no meaning for timm models; add model.width=1")
    if pretrained is None:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.pretrained={pretrained}: no such file (expected {name}'s timm weights)")
    overlay = {"file": str(path)}
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=num_classes,
                             **kwargs)  # fmt: skip
