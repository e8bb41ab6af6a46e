"""Per-element upper bounds on activation layers: the mechanism of UNIT and of uniform clipping.

Any elementwise activation module (found by ``models.activation_layers``), or a transformer's attention
layer (``Attention``), is wrapped in place by a ``BoundedActivation`` holding one bound per element of its
output (C, H, W for conv features; tokens x dim for attention). The
wrapped model stays an ordinary ``nn.Module``: the bounds are buffers, so it saves, loads (after
``wrap_activations`` with the same names) and evaluates like any other model.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.core.images import to_float
from bench.core.network import act_class, activation_layers


def bound_like(bound: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``relu(bound)`` in ``a``'s dtype and memory layout, with a batch axis: elementwise ops against a
    channels_last bf16 activation then run on matching strides (several times faster on the CPU than a
    (C, H, W) float32 bound broadcast against it, which also promotes the result to float32)."""
    b = F.relu(bound).to(a.dtype)[None]
    if a.dim() == 4 and a.is_contiguous(memory_format=torch.channels_last):
        b = b.contiguous(memory_format=torch.channels_last)
    return b


def batch_sum(x: torch.Tensor) -> torch.Tensor:
    """``x.sum(0)`` in float32, summed over rows of contiguous memory when ``x`` is channels_last."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        n, c, h, w = x.shape
        return x.permute(0, 2, 3, 1).reshape(n, -1).sum(0, dtype=torch.float32).view(h, w, c).permute(2, 0, 1)
    return x.sum(0, dtype=torch.float32)


class UpperClip(torch.autograd.Function):
    """``min(a, relu(bound))`` with the gradients UNIT specifies, in fewer passes than autograd's minimum.

    The bound's gradient is the sum over the batch of the upstream gradient where a > relu(bound), and
    zero where the bound is below 0 (it acts as 0 there); ``a`` gets the upstream gradient elsewhere.
    """

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
        b = bound_like(bound, a)
        ctx.save_for_backward(a > b, bound > 0)
        return torch.minimum(a, b)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        over, positive = ctx.saved_tensors
        grad_a = grad * ~over if ctx.needs_input_grad[0] else None
        grad_bound = None
        if ctx.needs_input_grad[1]:
            grad_bound = batch_sum(grad * over).masked_fill_(~positive, 0)
        return grad_a, grad_bound


class BoundedActivation(nn.Module):
    """``min(act(x), relu(bound))`` with one bound per element of the activation's output (UNIT, Sec. 4)."""

    def __init__(self, act: nn.Module, bound: torch.Tensor) -> None:
        super().__init__()
        self.act = act
        self.register_buffer("bound", bound)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        a = self.act(x, *args, **kwargs)  # an attention layer takes a mask beside its input
        if torch.is_grad_enabled():
            if self.bound.requires_grad:
                return UpperClip.apply(a, self.bound)
            return torch.minimum(a, bound_like(self.bound, a))
        if a is x:  # an in-place activation returned its input: leave the caller's tensor intact
            return torch.minimum(a, bound_like(self.bound, a))
        return a.clamp_max_(bound_like(self.bound, a))  # inference: in place on the fresh output


ATTENTION = "Attention"  # the output of each self-attention layer (a transformer's; UNIT, Section 5.2)


def bounded_class(name: str) -> type[nn.Module]:
    """A module class whose every output element gets a bound: an elementwise torch.nn activation by
    name, or ``Attention``: the self-attention layers of timm's vision transformers, found by their type
    (timm.layers.Attention), whose (tokens, dim) output is bounded element by element."""
    if name == ATTENTION:
        from timm.layers import Attention

        return Attention
    return act_class(name)


def activation_types(names: list[str] | tuple[str, ...]) -> tuple[type[nn.Module], ...]:
    """``defense.activations`` as module classes: elementwise activations, or ``Attention``."""
    return tuple(bounded_class(name) for name in names)


def find_activations(model: nn.Module, types: tuple[type[nn.Module], ...]) -> list[tuple[str, nn.Module]]:
    layers = [(n, m) for n, m in activation_layers(model, types) if not isinstance(m, BoundedActivation)]
    if not layers:
        names = ", ".join(t.__name__ for t in types)
        raise ValueError(f"{type(model).__name__} has no activation module of type {names} to bound")
    return layers


@torch.no_grad()
def activation_statistics(
    model: nn.Module, layers: list[tuple[str, nn.Module]], x: torch.Tensor, device: torch.device,
    batch_size: int = 512,
) -> dict[str, dict[str, torch.Tensor]]:  # fmt: skip
    """Per-element mean, unbiased std and max of each layer's output over images ``x`` (uint8, or float
    in [0, 1]), in float32."""
    sums: dict[str, list[torch.Tensor]] = {}

    def hook(name: str):
        def record(_: nn.Module, __: object, out: torch.Tensor) -> None:
            out = out.detach().double()
            acc = sums.setdefault(name, [torch.zeros_like(out[0]), torch.zeros_like(out[0]), out[0].clone()])
            acc[0] += out.sum(0)
            acc[1] += (out * out).sum(0)
            acc[2] = torch.maximum(acc[2], out.amax(0))

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in layers]
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device)
            xb = to_float(xb) if xb.dtype == torch.uint8 else xb
            model(xb.contiguous(memory_format=torch.channels_last))
    finally:
        for h in handles:
            h.remove()
    n = len(x)
    stats = {}
    for name, (s, sq, mx) in sums.items():
        mean = s / n
        var = ((sq - n * mean * mean) / max(n - 1, 1)).clamp_min(0)
        stats[name] = {"mean": mean.float(), "std": var.sqrt().float(), "max": mx.float()}
    return stats


def wrap_activations(model: nn.Module, bounds: dict[str, torch.Tensor]) -> list[BoundedActivation]:
    """Replace each named activation module by a ``BoundedActivation`` with the given bound, in place."""
    wrapped = []
    for name, bound in bounds.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        module = BoundedActivation(getattr(parent, child), bound)
        setattr(parent, child, module)
        wrapped.append(module)
    return wrapped


def bound_l1(modules: list[BoundedActivation]) -> torch.Tensor:
    """UNIT's regulariser: the sum over layers of the mean (non-negative) bound."""
    return sum(F.relu(m.bound).mean() for m in modules)  # type: ignore[return-value]
