"""No defense: the backdoored model as trained (the "none" column of Table 1)."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from bench.defenses._base import DefenderContext, Defense


class NoDefense(Defense):
    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        return model, {}
