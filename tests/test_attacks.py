"""Attack contract and the properties of the BadNets and Blend triggers."""

from __future__ import annotations

import pytest
import torch

from bench.attacks.badnets import BadNets
from bench.attacks.blend import Blend
from bench.core.errors import ConfigError, SettingError
from bench.run.validation import validate
from tests.conftest import bundle, compose_cfg


def test_badnets_parity_patch_only_touches_its_corner() -> None:
    attack = BadNets(seed=0)
    attack.setup(bundle())
    x = torch.rand(4, 3, 32, 32)
    out = attack.apply(x)
    changed = (out != x).any(1).any(0)
    assert changed[:1].sum() == 0 and changed[6:].sum() == 0 and changed[:, 6:].sum() == 0
    assert torch.equal(out[:, :, 1:6, 1:6], attack.pattern[:, :, 1:6, 1:6].expand(4, -1, -1, -1))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_badnets_paper_variant_is_white_bottom_right() -> None:
    attack = BadNets(variant="paper")
    attack.setup(bundle())
    out = attack.apply(torch.zeros(1, 3, 32, 32))
    assert out[..., 29:, 29:].min() == 1 and out.sum() == 27


def test_dirty_label_poisoning_rate_and_labels() -> None:
    data = bundle()
    attack = BadNets(target=3, poison_rate=0.1, seed=1)
    attack.setup(data)
    poisoned = attack.poison(data.train)
    changed = (poisoned.x != data.train.x).flatten(1).any(1)
    assert int(changed.sum()) == 20
    assert (poisoned.y[changed] == 3).all() and (data.train.y[changed] != 3).all()
    assert torch.equal(poisoned.y[~changed], data.train.y[~changed])


def test_blend_formula_and_seeded_pattern() -> None:
    a, b = Blend(alpha=0.2, seed=5), Blend(alpha=0.2, seed=5)
    a.setup(bundle())
    b.setup(bundle())
    assert torch.equal(a.pattern, b.pattern)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(a.apply(x), 0.8 * x + 0.2 * a.pattern)


def test_trigger_survives_state_dict_round_trip() -> None:
    a, b = BadNets(seed=1), BadNets(seed=2)
    a.setup(bundle())
    b.setup(bundle())
    assert not torch.equal(a.pattern, b.pattern)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.pattern, b.pattern)


@pytest.mark.parametrize("rate", [0.0, 1.5, -0.1, "abc"])
def test_poison_rate_range(rate: object) -> None:
    """The annotation is the range: a config outside it is refused before any work."""
    cfg, _ = compose_cfg(["attack=badnets", f"attack.poison_rate={rate}"])
    with pytest.raises(SettingError, match=r"attack.poison_rate=.* must be a number in \(0, 1\]"):
        validate(cfg)


def test_target_outside_class_range() -> None:
    with pytest.raises(ConfigError, match=r"attack.target must be in \[0, 9\]"):
        BadNets(target=10).setup(bundle())


def test_poison_rate_larger_than_pool() -> None:
    attack = BadNets(poison_rate=0.95)
    attack.setup(bundle())
    with pytest.raises(ConfigError, match="non-target"):
        attack.poison(bundle().train)
