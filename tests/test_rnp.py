"""RNP unlearns until the clean accuracy is at most its threshold, learns BN-neuron masks on the unlearned
copy only, and prunes the original model's lowest-mask neurons within the validation tolerance."""

from __future__ import annotations

import torch

from bench.defenses.rnp import RNP
from tests.conftest import ctx, trained_toy_model


def test_rnp_unlearns_recovers_and_prunes_the_original() -> None:
    model = trained_toy_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rnp = RNP(unlearn_epochs=20, recover_epochs=20, threshold=0.9, tolerance=0.5)
    repaired, info = rnp.repair(model, ctx(200))
    assert info["unlearned_train_acc"] <= 20 and info["unlearn_epochs"] <= 21
    assert 0 < info["pruned"] <= info["below_threshold"] <= info["neurons"]
    changed = [k for k, v in repaired.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(k.endswith("weight") for k in changed)  # only BN weights zeroed
    zeroed = sum(int((repaired.state_dict()[k] == 0).sum()) - int((before[k] == 0).sum()) for k in changed)
    assert zeroed == info["pruned"]


def test_a_zero_tolerance_keeps_the_model_when_pruning_costs_accuracy() -> None:
    model = trained_toy_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _, info = RNP(recover_epochs=1, threshold=1.0, tolerance=0.0).repair(model, ctx(200))
    if info["pruned"] == 0:
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert info["val_acc_after"] >= info["val_acc_before"]
