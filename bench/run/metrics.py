"""Metrics of a (possibly repaired) model: ACC, ASR, RA, DER between two evaluations, and the TPR/FPR of
defenses that also detect triggered inputs.

ASR and RA are measured on test images whose true class is not the target, with the trigger applied:
ASR = share classified as the target, RA = share classified as their true class (BNA's SIA).
Percentages are in 0-100.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from bench.core.engine import autocast
from bench.core.images import ImageSet, to_float


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Predicted labels for uint8 images, in large batches without autograd."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        with autocast(device):
            xb = to_float(x[i : i + batch_size].to(device)).contiguous(memory_format=torch.channels_last)
            out.append(model(xb).argmax(1).cpu())
    return torch.cat(out)


def percent(mask: torch.Tensor) -> float:
    return round(100.0 * mask.float().mean().item(), 4)


class TriggeredTestSet:
    """The test images that measure the backdoor, triggered once and reused for every evaluation (and
    cached with the victim: a generator attack's trigger costs tens of seconds on the CPU)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    @classmethod
    def build(
        cls, trigger: Callable[[torch.Tensor], torch.Tensor], target: int, test: ImageSet
    ) -> TriggeredTestSet:
        """``trigger`` (uint8 images -> uint8 images) on the test images whose class is not ``target``."""
        keep = test.y != target
        return cls(trigger(test.x[keep]), test.y[keep])


def evaluate(
    model: nn.Module,
    test: ImageSet,
    triggered: TriggeredTestSet | None,
    target: int,
    device: torch.device,
    batch_size: int = 1024,
) -> dict[str, float | None]:
    """ACC on the clean test set; ASR and RA on its triggered non-target images (None without a trigger)."""
    acc = percent(predict(model, test.x, device, batch_size) == test.y)
    if triggered is None:
        return {"acc": acc, "asr": None, "ra": None}
    pred = predict(model, triggered.x, device, batch_size)
    return {"acc": acc, "asr": percent(pred == target), "ra": percent(pred == triggered.y)}


@torch.inference_mode()
def flag_rate(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 1024) -> float:
    """Share (0-100) of uint8 images that the repaired model's ``detect`` flags as triggered."""
    model.eval()
    flags = [
        model.detect(to_float(x[i : i + batch_size].to(device))).cpu() for i in range(0, len(x), batch_size)
    ]
    return percent(torch.cat(flags))


def detection(
    model: nn.Module,
    test: ImageSet,
    triggered: TriggeredTestSet | None,
    device: torch.device,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Test-time detection of a repaired model that flags inputs (``bench.defenses.Detector``: BNA,
    STRIP): FPR on the clean test set, TPR on the triggered non-target test images."""
    out = {"fpr": flag_rate(model, test.x, device, batch_size)}
    if triggered is not None:
        out["tpr"] = flag_rate(model, triggered.x, device, batch_size)
    return out


def der(acc_before: float, asr_before: float | None, acc: float, asr: float | None) -> float | None:
    """Defense effectiveness rating (BackdoorBench, TSBD): (max(0, dASR) - max(0, dACC) + 1) / 2, in 0-100."""
    if asr_before is None or asr is None:
        return None
    return round(100.0 * (max(0.0, asr_before - asr) / 100 - max(0.0, acc_before - acc) / 100 + 1) / 2, 4)
