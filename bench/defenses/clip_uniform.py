"""Uniform clipping: UNIT's simple baseline (its Fig. 4). Every neuron after every activation layer is
bounded at mean + z * std of its activation on the defender's data, with one z for all (or at the
largest activation seen, ``z: max``). UNIT's point: no single z removes the backdoor and keeps accuracy.
"""

from __future__ import annotations

from typing import Any, Literal

import torch.nn as nn

from bench.defenses._base import DefenderContext, Defense
from bench.defenses._bounds import (
    activation_statistics,
    activation_types,
    bound_l1,
    find_activations,
    wrap_activations,
)


class UniformClip(Defense):
    def __init__(self, z: float | Literal[max] = 3.0, activations: tuple[str, ...] = ("ReLU",)) -> None:
        self.z = z
        self.types = activation_types(list(activations))

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        layers = find_activations(model, self.types)
        stats = activation_statistics(model, layers, ctx.data.x, ctx.device)
        bounds = {
            n: s["max"] if self.z == "max" else s["mean"] + float(self.z) * s["std"] for n, s in stats.items()
        }
        modules = wrap_activations(model, bounds)
        return model, {
            "z": self.z,
            "layers": len(modules),
            "elements": sum(m.bound.numel() for m in modules),
            "bound_l1": round(float(bound_l1(modules)), 6),
        }
