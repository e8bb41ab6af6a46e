"""Architectures: research-code module names, one activation module per use, width multiplier."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hydra.utils import instantiate

from bench.core.network import activation_layers
from bench.models import Normalized, make_act
from bench.models.resnet import resnet18
from tests.conftest import compose_cfg, group_options, is_timm

OWN_MODELS = [m for m in group_options("model") if not is_timm(m)]


def test_resnet18_state_dict_names_match_research_code() -> None:
    keys = set(resnet18(10).state_dict())
    for k in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.0.bn2.weight",
              "layer2.0.shortcut.0.weight", "layer4.1.conv2.weight", "linear.weight"):  # fmt: skip
        assert k in keys


def test_width_multiplier_scales_channels() -> None:
    assert resnet18(10, width=0.25).conv1.out_channels == 16
    assert resnet18(10).linear.in_features == 512


@pytest.mark.parametrize("name", OWN_MODELS)
def test_each_activation_module_runs_once_per_forward(name: str) -> None:
    cfg, _ = compose_cfg([f"model={name}", "model.width=0.125"])
    model = instantiate(cfg.model, num_classes=10).eval()
    layers = activation_layers(model)
    assert layers, "every model has activation layers"
    calls = {n: 0 for n, _ in layers}
    handles = [m.register_forward_hook(lambda *_, n=n: calls.__setitem__(n, calls[n] + 1)) for n, m in layers]
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32))
    for h in handles:
        h.remove()
    assert set(calls.values()) == {1}, {n: c for n, c in calls.items() if c != 1}


def test_activation_choice_is_passed_in() -> None:
    model = resnet18(10, width=0.125, act="GELU")
    assert {type(m) for _, m in activation_layers(model)} == {nn.GELU}
    with pytest.raises(ValueError, match="unknown activation"):
        make_act("Softmax")


def test_normalized_wrapper() -> None:
    net = nn.Identity()
    model = Normalized(net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert torch.allclose(model(torch.full((1, 3, 2, 2), 0.75)), torch.ones(1, 3, 2, 2))


def test_timm_models_refuse_a_width_multiplier_and_unknown_names() -> None:
    from bench.core.errors import ConfigError
    from bench.models.timm_model import timm_model

    with pytest.raises(ConfigError, match="model.width=0.125 has no meaning for timm"):
        timm_model("resnet18", width=0.125)
    with pytest.raises(ConfigError, match="unknown timm model"):
        timm_model("no_such_net")


def test_timm_model_loads_a_local_weights_file_with_a_fresh_head(tmp_path) -> None:
    """``model.pretrained``: the file's weights everywhere but the classifier, which starts afresh for the
    dataset's classes; a missing file is refused by name."""
    from bench.core.errors import ConfigError
    from bench.models.timm_model import timm_model

    small = {"img_size": 32, "patch_size": 8, "depth": 1}
    torch.manual_seed(0)
    source = timm_model("vit_tiny_patch16_224", num_classes=1000, **small)
    torch.save(source.state_dict(), tmp_path / "vit.pth")
    loaded = timm_model("vit_tiny_patch16_224", num_classes=10, pretrained=str(tmp_path / "vit.pth"), **small)
    assert torch.equal(loaded.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    assert torch.equal(loaded.pos_embed, source.pos_embed) and loaded.head.weight.shape == (10, 192)
    fresh = timm_model("vit_tiny_patch16_224", num_classes=10, **small)
    assert not torch.equal(fresh.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    with pytest.raises(ConfigError, match="model.pretrained=.*no such file"):
        timm_model("vit_tiny_patch16_224", pretrained=str(tmp_path / "missing.pth"), **small)
