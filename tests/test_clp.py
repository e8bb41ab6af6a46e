"""CLP prunes exactly the batch-norm channels whose conv -> BN Lipschitz bound is an outlier of its layer
(zeroed weight and bias, the count reported), reads no data, and refuses a network whose batch-norms are
not fed by a convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hydra.utils import instantiate

from bench.core.errors import ConfigError
from bench.defenses.clp import CLP, channel_lipschitz
from tests.conftest import compose_cfg, ctx


def conv_bn(channels: int = 16, outlier: int | None = 5) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))  # fmt: skip
    if outlier is not None:
        with torch.no_grad():
            net[0].weight[outlier] *= 50  # one channel with a far larger bound: the planted outlier
    return net.eval()


def test_the_outlier_channel_is_zeroed_and_reported() -> None:
    net = conv_bn()
    bounds = channel_lipschitz(net[0], net[1])
    assert bounds.argmax() == 5
    repaired, info = CLP(u=3.0).repair(net, ctx(20))
    bn = repaired[1]
    assert bn.weight[5] == 0 and bn.bias[5] == 0
    assert (bn.weight[torch.arange(16) != 5] != 0).all()
    assert info["pruned"] == 1 and info["pruned_per_layer"] == {"1": 1} and info["layers"] == 1


def test_a_large_u_prunes_nothing() -> None:
    net = conv_bn()
    weights = net[1].weight.detach().clone()
    _, info = CLP(u=100.0).repair(net, ctx(20))
    assert info["pruned"] == 0 and torch.equal(net[1].weight, weights)


def test_the_bound_is_the_kernels_spectral_norm_times_gamma_over_sigma() -> None:
    net = conv_bn(4, outlier=None)
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0]))
        net[1].running_var.copy_(torch.tensor([4.0, 1.0, 0.25, 9.0]))
    expected = [torch.linalg.svdvals(net[0].weight[i].reshape(3, -1)).max() * abs(g) / v**0.5
                for i, (g, v) in enumerate([(1.0, 4.0), (-2.0, 1.0), (0.5, 0.25), (3.0, 9.0)])]  # fmt: skip
    assert torch.allclose(channel_lipschitz(net[0], net[1]), torch.stack(expected), rtol=1e-5)


@pytest.mark.parametrize(("model", "works"), [("resnet18", True), ("preact_resnet18", False)])
def test_conv_bn_networks_run_and_pre_activation_ones_are_refused(model: str, works: bool) -> None:
    cfg, _ = compose_cfg([f"model={model}", "model_width=0.125"])
    net = instantiate(cfg.model, num_classes=10).eval()
    if works:
        _, info = CLP().repair(net, ctx(20))
        assert info["layers"] == sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    else:
        with pytest.raises(ConfigError, match="CLP needs every BatchNorm2d fed directly by a Conv2d"):
            CLP().repair(net, ctx(20))
