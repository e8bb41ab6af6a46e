"""BNA (seed paper "Backdoor Mitigation by Correcting the Distribution of Neural Activations").

1. Detection. For every putative (source s, target t) pair, the smallest mask-and-pattern trigger that
   sends the defender's class-s images to t is reverse-engineered (the search Neural Cleanse uses). A
   backdoor target needs unusually small triggers, so the reciprocal trigger sizes 1/|m|_1 of all pairs
   get a MAD anomaly index and pairs above ``anomaly_threshold`` (7) are detected. Nothing detected: g = f,
   every output is the unchanged model's and nothing is flagged; the record says so.
2. Correction, per detected target t: at every BatchNorm output, a per-neuron transform
   h(z) = max(min((z - mu) / sigma, omega), v) (mu = 0, sigma = 1, omega / v = the clean maximum / minimum
   to start) is fitted (Adam ``lr``, ``epochs`` passes over the triggered images) so that the soft
   histograms (bins ``bin_width`` wide, sigmoid sharpness ``tau``) of the per-image mean activation of
   each neuron on the detected sources' images WITH their reverse-engineered triggers match those on the
   same images without them: total variation by default, JS or KL as options.
3. Inference rule (``BNARepaired``): when f(x) is a detected target t, the output is g(x | Theta_t), f
   with t's transforms, else f(x). An input is flagged as triggered when f and g disagree (``detect``).
The record keeps the detected pairs, all anomaly indices, and the divergence before and after fitting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn as nn

from bench.core.errors import ConfigError
from bench.core.images import stamp
from bench.core.network import capture
from bench.core.schema import Fraction, Positive, PositiveInt
from bench.defenses._base import DefenderContext, Defense, Gradient, on_device
from bench.defenses._reverse import MAD_CONSISTENCY, TriggerSearch, search_generators

Divergence = Literal["tv", "js", "kl"]


def bn_layers(model: nn.Module) -> list[str]:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if not names:
        raise ConfigError(
            f"bna corrects BatchNorm outputs, and {type(model).__name__} has no BatchNorm2d layer"
        )
    return names


def soft_histogram(values: torch.Tensor, edges: torch.Tensor, tau: float) -> torch.Tensor:
    """Differentiable histogram per column: values (N, C), edges (B + 1,) -> counts (C, B), each bin
    sigmoid(tau (z - left)) - sigmoid(tau (z - right)), so the counts of a column sum to N for values
    well inside the edges."""
    s = torch.sigmoid(tau * (values[..., None] - edges))  # (N, C, B + 1)
    return (s[..., :-1] - s[..., 1:]).sum(0)


def divergence(p_counts: torch.Tensor, q_counts: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over neurons of the divergence between normalised histograms (C, B)."""
    eps = 1e-8
    p = p_counts / p_counts.sum(1, keepdim=True).clamp_min(eps)
    q = q_counts / q_counts.sum(1, keepdim=True).clamp_min(eps)
    if kind == "tv":
        return 0.5 * (p - q).abs().sum(1).mean()
    if kind == "kl":
        return (p * ((p + eps) / (q + eps)).log()).sum(1).mean()
    mid = (p + q) / 2
    return 0.5 * (divergence(p, mid, "kl") + divergence(q, mid, "kl"))


class BNARepaired(nn.Module):
    """f plus one set of BN-output transforms per detected target, applied by forward hooks."""

    def __init__(self, model: nn.Module, targets: list[int]) -> None:
        super().__init__()
        self.model = model
        self.layers = bn_layers(model)
        self.register_buffer("targets", torch.tensor(targets, dtype=torch.long))
        self.params = nn.ParameterDict()
        modules = dict(model.named_modules())
        for i, name in enumerate(self.layers):
            c = modules[name].num_features
            for key, fill in (("mu", 0.0), ("log_sigma", 0.0), ("omega", math.inf), ("v", -math.inf)):
                self.params[f"{key}_{i}"] = nn.Parameter(
                    torch.full((len(targets), c), fill), requires_grad=False
                )
            modules[name].register_forward_hook(self.hook(i))
        self.active: int | None = None

    def hook(self, i: int) -> Callable[..., torch.Tensor | None]:
        def transform(_m: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor | None:
            if self.active is None:
                return None
            a = self.active
            view = (1, -1, 1, 1)
            z = (out - self.params[f"mu_{i}"][a].view(view)) / self.params[f"log_sigma_{i}"][a].exp().view(
                view
            )
            return torch.maximum(torch.minimum(z, self.params[f"omega_{i}"][a].view(view)),
                                 self.params[f"v_{i}"][a].view(view))  # fmt: skip

        return transform

    @contextmanager
    def using(self, index: int | None) -> Iterator[None]:
        """Within the block the model is g(. | Theta) of the ``index``-th detected target."""
        previous, self.active = self.active, index
        try:
            yield
        finally:
            self.active = previous

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(x), the inference rule's output)."""
        with self.using(None):
            f = self.model(x)
        out = f.clone()
        pred = f.argmax(1)
        for a, t in enumerate(self.targets.tolist()):
            hit = pred == t
            if hit.any():
                with self.using(a):
                    out[hit] = self.model(x[hit]).to(out.dtype)
        return f, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.both(x)[1]

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        """True where f and the corrected model disagree: the input is taken as triggered."""
        f, g = self.both(x)
        return f.argmax(1) != g.argmax(1)


class BNA(Defense):
    def __init__(
        self,
        steps: PositiveInt = 500,
        batch_size: PositiveInt = 64,
        search_lr: Positive = 0.1,
        init_cost: float = 1e-3,
        asr_threshold: Fraction = 0.9,
        patience: PositiveInt = 5,
        anomaly_threshold: float = 7.0,
        divergence: Divergence = "tv",
        bin_width: Positive = 0.1,
        tau: Positive = 150.0,
        lr: Positive = 0.01,
        epochs: PositiveInt = 10,
        fit_batch_size: PositiveInt = 128,
        gradient: Gradient = "fp32",
        images_per_pass: PositiveInt | None = None,
    ) -> None:
        # BNA's paper does not give the search's schedule: the cost starts at init_cost, as it has here
        # since BNA was added (Neural Cleanse's code starts it at 0)
        self.search = TriggerSearch(
            steps,
            batch_size,
            search_lr,
            init_cost,
            asr_threshold,
            patience,
            cost_from_zero=False,
            gradient=gradient,
            images_per_pass=images_per_pass,
        )
        self.anomaly_threshold, self.kind, self.bin_width, self.tau = (
            anomaly_threshold,
            divergence,
            bin_width,
            tau,
        )
        self.lr, self.epochs, self.fit_batch_size = lr, epochs, fit_batch_size

    # -- 1. detection --------------------------------------------------------------------------------
    def detect_pairs(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: DefenderContext
    ) -> tuple[list[dict[str, Any]], dict[tuple[int, int], dict[str, Any]]]:
        model.eval().requires_grad_(False)
        pairs = [(s, t) for t in range(ctx.num_classes) for s in range(ctx.num_classes) if s != t]
        gens = search_generators(ctx.seed, len(pairs))
        pools = [x[y == s] for s, _ in pairs]  # every pair's search stepped together (images_per_pass)
        found = self.search.run_many(model, pools, [t for _, t in pairs], gens, ctx.progress, "bna pairs")
        triggers = dict(zip(pairs, found, strict=True))
        model.requires_grad_(True)
        reciprocal = torch.tensor([1 / max(triggers[p]["l1"], 1e-12) for p in pairs])
        median = reciprocal.median()
        mad = MAD_CONSISTENCY * (reciprocal - median).abs().median()
        index = (reciprocal - median) / mad.clamp_min(1e-12)
        rows = []
        for (s, t), i in zip(pairs, index.tolist(), strict=True):
            l1 = round(triggers[(s, t)]["l1"], 3)
            rows.append({"source": s, "target": t, "l1": l1, "index": round(i, 3)})
        return rows, triggers

    # -- 2. correction -------------------------------------------------------------------------------
    @staticmethod
    def bn_outputs(
        repaired: BNARepaired, x: torch.Tensor, reduce: Callable[[torch.Tensor], Any]
    ) -> list[Any]:
        """``reduce`` of every BN layer's output on ``x`` (after the active transform, if any)."""
        with capture(repaired.model, repaired.layers) as out:
            repaired.model(x)
        return [reduce(out[name].float()) for name in repaired.layers]

    def fit_target(
        self,
        repaired: BNARepaired,
        a: int,
        clean: torch.Tensor,
        triggered: torch.Tensor,
        gen: torch.Generator,
    ) -> tuple[float, float]:
        """Fit the ``a``-th target's transforms; the divergence on all triggered images before and after."""
        with torch.no_grad(), repaired.using(None):
            stats = self.bn_outputs(
                repaired, clean, lambda o: (o.mean((2, 3)), o.amax((0, 2, 3)), o.amin((0, 2, 3)))
            )
        edges, reference = [], []
        for i, (means, high, low) in enumerate(stats):
            lo, hi = means.min().item() - 5 * self.bin_width, means.max().item() + 5 * self.bin_width
            edges.append(torch.arange(lo, hi + self.bin_width, self.bin_width, device=means.device))
            reference.append(soft_histogram(means, edges[-1], self.tau))
            repaired.params[f"omega_{i}"].data[a] = high  # start: the identity on the clean range
            repaired.params[f"v_{i}"].data[a] = low
        params = [
            repaired.params[f"{key}_{i}"]
            for i in range(len(stats))
            for key in ("mu", "log_sigma", "omega", "v")
        ]

        def loss_on(x: torch.Tensor) -> torch.Tensor:
            means = self.bn_outputs(repaired, x, lambda o: o.mean((2, 3)))
            return torch.stack([divergence(soft_histogram(z, e, self.tau), q, self.kind)
                                for z, e, q in zip(means, edges, reference, strict=True)]).mean()  # fmt: skip

        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=self.lr)
        with repaired.using(a):
            with torch.no_grad():
                before = loss_on(triggered).item()
            for _ in range(self.epochs):
                order = torch.randperm(len(triggered), generator=gen).to(triggered.device)
                for idx in order.split(self.fit_batch_size):
                    loss = loss_on(triggered[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            with torch.no_grad():
                after = loss_on(triggered).item()
        for p in params:
            p.requires_grad_(False)
        return before, after

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        x, y = on_device(ctx.data, ctx.device)
        rows, triggers = self.detect_pairs(model, x, y, ctx)
        detected = [r for r in rows if r["index"] > self.anomaly_threshold]
        info: dict[str, Any] = {"detected": [[r["source"], r["target"]] for r in detected], "pairs": rows}
        targets = sorted({r["target"] for r in detected})
        repaired = BNARepaired(model.eval(), targets).to(ctx.device)
        if not detected:  # g = f for every input: identical outputs, nothing flagged
            info["action"] = "none detected: model returned unchanged"
            return repaired.eval(), info
        gen = torch.Generator().manual_seed(ctx.seed)
        info["divergence"] = []
        for a, t in enumerate(targets):
            sources = [r["source"] for r in detected if r["target"] == t]
            clean = torch.cat([x[y == s] for s in sources])
            triggered = torch.cat([stamp(x[y == s], triggers[(s, t)]["mask"], triggers[(s, t)]["pattern"])
                                   for s in sources])  # fmt: skip
            before, after = self.fit_target(repaired, a, clean, triggered, gen)
            info["divergence"].append({"target": t, "sources": sources, "before": round(before, 4),
                                       "after": round(after, 4)})  # fmt: skip
        info["action"] = "corrected"
        return repaired.eval(), info
