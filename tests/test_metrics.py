"""ACC, ASR (non-target images only), RA and DER."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from bench.attacks.badnets import BadNets
from bench.core.images import DataBundle, ImageSet
from bench.run.metrics import TriggeredTestSet, der, evaluate


class CornerDetector(nn.Module):
    """Predicts the target 0 whenever the BadNets corner is bright, else class 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hit = (x[:, :, 1:6, 1:6] == self.pattern).all(3).all(2).all(1).float()
        return torch.stack([hit, 1 - hit], 1)


def test_asr_counts_only_non_target_images() -> None:
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    test = ImageSet(torch.zeros(6, 3, 32, 32, dtype=torch.uint8), y)
    attack = BadNets(target=0)
    attack.setup(DataBundle("t", test, test, 3, (0.0,) * 3, (1.0,) * 3))
    model = CornerDetector()
    model.pattern = attack.pattern[:, :, 1:6, 1:6]
    triggered = TriggeredTestSet.build(attack.apply_uint8, attack.target, test)
    assert len(triggered.y) == 4
    m = evaluate(model, test, triggered, 0, torch.device("cpu"))
    assert m == {"acc": pytest.approx(100 * 2 / 6, abs=1e-3), "asr": 100.0, "ra": 0.0}


def test_der() -> None:
    assert der(90, 100, 88, 0) == pytest.approx(99.0)
    assert der(90, 100, 95, 100) == pytest.approx(50.0)
    assert der(90, None, 90, None) is None
