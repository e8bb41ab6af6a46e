"""Neural Cleanse (Wang et al., IEEE S&P 2019).

Detection: for every class c, reverse-engineer the smallest trigger (mask m, pattern p; x' = (1-m)x + m p)
that sends the defender's images to c, with the original code's search and cost schedule (cost from 0 to
``init_cost`` once the trigger succeeds, then x2 / /2^1.5; see ``defenses._reverse.TriggerSearch``).
The ten searches are stepped together, grouped into forward passes by ``images_per_pass`` (each its own
batches, optimiser, schedule and stop: the steps each would take alone).
The best (smallest-L1) successful mask of each class is kept. A class is flagged when its mask L1 is
below the median and its anomaly index (|L1 - median| / (1.4826 * MAD)) exceeds ``anomaly_threshold``.
Mitigation: unlearning. ``unlearn_ratio`` of the defender data is stamped with the flagged classes'
reversed triggers, keeping its CORRECT labels, and the model is fine-tuned on it (BackdoorBench's
recipe, conf/finetune/sgd.yaml). When no class is flagged, the model is returned unchanged and the record
says so.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from bench.core.engine import Recipe, fit
from bench.core.images import ImageSet, quantize, stamp, to_float
from bench.core.schema import Fraction, Positive, PositiveInt
from bench.defenses._base import DefenderContext, Defense, Gradient
from bench.defenses._reverse import TriggerSearch, anomaly_indices, search_generators


class NeuralCleanse(Defense):
    def __init__(
        self,
        recipe: Recipe,
        steps: PositiveInt = 31000,
        batch_size: PositiveInt = 32,
        epoch_steps: int | None = 31,
        early_stop_patience: int | None = 25,
        lr: Positive = 0.1,
        init_cost: float = 1e-3,
        asr_threshold: Fraction = 0.99,
        patience: PositiveInt = 5,
        anomaly_threshold: float = 2.0,
        unlearn_ratio: Fraction = 0.2,
        gradient: Gradient = "fp32",
        images_per_pass: PositiveInt | None = None,
    ) -> None:
        self.recipe = recipe
        self.search = TriggerSearch(
            steps,
            batch_size,
            lr,
            init_cost,
            asr_threshold,
            patience,
            epoch_steps,
            early_stop_patience,
            gradient=gradient,
            images_per_pass=images_per_pass,
        )
        self.anomaly_threshold, self.unlearn_ratio = anomaly_threshold, unlearn_ratio

    def unlearning_set(
        self, data: ImageSet, triggers: list[dict[str, Any]], gen: torch.Generator
    ) -> ImageSet:
        """The defender data with ``unlearn_ratio`` of it stamped (flagged triggers in turn), labels kept."""
        chosen = torch.randperm(len(data), generator=gen)[: round(self.unlearn_ratio * len(data))]
        x = data.x.clone()
        for i, trigger in enumerate(triggers):
            part = chosen[i :: len(triggers)]
            m, p = trigger["mask"].cpu(), trigger["pattern"].cpu()
            x[part] = quantize(stamp(to_float(data.x[part]), m, p))
        return ImageSet(x, data.y.clone())

    def reverse_triggers(
        self, model: nn.Module, x: torch.Tensor, ctx: DefenderContext
    ) -> list[dict[str, Any]]:
        """Each class's smallest trigger on the images ``x``: one search per class, stepped together
        (grouped into passes by ``images_per_pass``; the model frozen in eval mode)."""
        classes = list(range(ctx.num_classes))
        gens = search_generators(ctx.seed, len(classes))
        return self.search.run_many(model, [x] * len(classes), classes, gens, ctx.progress, "nc")

    def repair(self, model: nn.Module, ctx: DefenderContext) -> tuple[nn.Module, dict[str, Any]]:
        model.eval().requires_grad_(False)
        triggers = self.reverse_triggers(model, to_float(ctx.data.x.to(ctx.device)), ctx)
        gen = torch.Generator().manual_seed(ctx.seed)
        model.requires_grad_(True)
        norms = torch.tensor([t["l1"] for t in triggers])
        index = anomaly_indices(norms)
        flagged = [c for c in range(ctx.num_classes) if index[c] > self.anomaly_threshold]
        info: dict[str, Any] = {
            "mask_l1": [round(v, 3) for v in norms.tolist()],
            "anomaly_index": [round(v, 3) for v in index.tolist()],
            "search_failed": [c for c, t in enumerate(triggers) if t.get("failed")],
            "search_steps": [t["steps"] for t in triggers],
            "flagged": flagged,
        }
        if not flagged:
            info["action"] = "none flagged: model returned unchanged"
            return model, info
        data = self.unlearning_set(ctx.data, [triggers[c] for c in flagged], gen)
        stats = fit(
            model, data, self.recipe, ctx.device, seed=ctx.seed, desc="nc unlearn", progress=ctx.progress
        )
        info.update(
            action="unlearned", final_loss=round(stats["loss"], 4), loss_per_epoch=stats["loss_per_epoch"],
            acc_per_epoch=stats["acc_per_epoch"],
        )  # fmt: skip
        return model, info
