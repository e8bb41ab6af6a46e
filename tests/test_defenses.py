"""Behaviour of the baseline defenses (FP, NAD, ANP, NC, I-BAU, SEAM) and one smoke cell per defense
on each of resnet18, vgg11 and mobilenet."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from attacks.badnets import BadNets
from bench.engine import Recipe, fit
from bench.pipeline import run_cell
from datasets import DataBundle
from defenses._base import DefenderContext
from defenses.anp import ANP, BatchNormPerturbation
from defenses.fp import FinePruning, MaskedLinear
from defenses.ibau import IBAU
from defenses.nad import AttentionDistillationLoss
from defenses.nc import NeuralCleanse, anomaly_indices
from defenses.seam import SEAM
from models import Normalized, capture, classifier_head, head_features, stage_ends
from models.mobilenet import mobilenet
from models.resnet import resnet18
from models.vgg import vgg11
from tests.conftest import group_options, needs_fashion, toy_data, trained_toy_model

CPU = torch.device("cpu")
NO_EPOCHS = Recipe(epochs=0)


def ctx(n: int = 200) -> DefenderContext:
    return DefenderContext(toy_data(n, seed=2), 10, CPU, seed=0, progress=False)


def test_fp_prunes_exactly_the_channels_it_reports() -> None:
    model = trained_toy_model()
    repaired, info = FinePruning(NO_EPOCHS, tolerance=0.1).repair(model, ctx())
    head = classifier_head(repaired)
    assert isinstance(head, MaskedLinear)
    zeros = torch.nonzero(head.mask == 0).flatten().tolist()
    assert zeros == info["pruned_channels"] and len(zeros) == info["pruned"] > 0
    x = torch.rand(3, 3, 32, 32)
    feats = head_features(repaired, x)
    noisy = feats.clone()
    noisy[:, zeros] += 100.0  # pruned channels must not reach the logits
    assert torch.allclose(head(feats), head(noisy))
    assert info["val_acc_unpruned"] - info["val_acc_pruned"] <= 10 + 1e-6


def test_stage_ends_cover_each_architecture() -> None:
    for net in (resnet18(width=0.125), vgg11(width=0.125), mobilenet(width=0.125)):
        names = stage_ends(net, (3, 32, 32), 3)
        with torch.no_grad(), capture(net, names) as out:
            net(torch.rand(1, 3, 32, 32))
        sizes = [out[n].shape[-1] for n in names]
        assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 3


def test_nad_loss_has_its_attention_term() -> None:
    student = trained_toy_model()
    layers = stage_ends(student, (3, 32, 32), 3)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    same = AttentionDistillationLoss(copy.deepcopy(student), layers, [500, 1000, 1000], 2)
    same(student, x, y)
    assert same.last["at"] == pytest.approx(0, abs=1e-6)  # identical teacher: only CE remains
    torch.manual_seed(1)
    stranger = Normalized(resnet18(width=0.125), (0.5,) * 3, (0.5,) * 3).eval()
    teacher = AttentionDistillationLoss(stranger, layers, [500, 1000, 1000], 2)
    loss = teacher(student, x, y)
    assert teacher.last["at"] > 0 and loss.item() == pytest.approx(
        teacher.last["ce"] + teacher.last["at"], rel=1e-5
    )
    loss.backward()  # the attention term reaches the student's weights
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)


def test_anp_masks_stay_in_unit_interval_and_pruning_zeroes_bn() -> None:
    model = trained_toy_model()
    repaired, info = ANP(iterations=30, batch_size=32, mask_lr=2.0, threshold=0.9, tolerance=0.5).repair(
        model, ctx()
    )
    assert 0 <= info["mask_min"] <= info["mask_mean"] <= 1
    bns = [m for m in repaired.modules() if isinstance(m, nn.BatchNorm2d)]
    zeroed = sum(int(((bn.weight == 0) & (bn.bias == 0)).sum()) for bn in bns)
    assert zeroed == info["pruned"] > 0
    assert info["neurons"] == len(BatchNormPerturbation(trained_toy_model()).flat_masks())


def test_nc_anomaly_index_flags_the_small_outlier() -> None:
    norms = torch.tensor([50.0, 52, 48, 51, 49, 53, 47, 50, 3, 52])
    index = anomaly_indices(norms)
    assert index.argmax() == 8 and index[8] > 2 and (index[torch.arange(10) != 8] < 2).all()


def test_ibau_perturbation_is_universal() -> None:
    model = trained_toy_model()
    defense = IBAU(rounds=1, K=2, batch_size=50)
    x = torch.rand(50, 3, 32, 32)
    delta = defense.universal_perturbation(model.eval(), [(x, torch.zeros(50, dtype=torch.long))])
    assert delta.shape == (1, 3, 32, 32) and delta.norm() <= 10 + 1e-4
    before = [p.clone() for p in model.parameters()]
    _, info = defense.repair(model, ctx(100))
    assert info["perturbation_shape"] == [1, 3, 32, 32]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_seam_forgets_before_it_recovers() -> None:
    model = trained_toy_model()
    _, info = SEAM(Recipe(epochs=3, batch_size=50, lr=0.01), forget_ratio=0.2, forget_acc=0.3).repair(
        model, ctx()
    )
    assert info["defender_acc_after_forget"] < 30 < info["defender_acc_before"]
    assert info["defender_acc_after_recover"] > info["defender_acc_after_forget"]


def test_nc_flags_the_badnets_target_and_not_a_clean_model() -> None:
    """On the toy task. The backdoored target must stand out more than any class of the clean model; a
    clean class may itself cross NC's index of 2 (NC's false positives: on one processor class 5 of this
    clean model reaches 2.15, on another it stays below 2), so the clean model is held to the ranking, not
    to the threshold. (On the 2-epoch Fashion-MNIST smoke model NC also finds class 0's trigger smallest,
    but the other classes' norms spread too widely at a test-sized budget for the MAD index to pass 2; the
    CPU benchmark measures NC on the real models.)"""
    train = toy_data(1000, 1)
    flagged, index = {}, {}
    for attack in (BadNets(seed=0), None):
        torch.manual_seed(0)
        model = Normalized(resnet18(10, width=0.125), (0.5,) * 3, (0.5,) * 3)
        data = train
        if attack is not None:
            attack.setup(DataBundle("toy", train, train, 10, (0.5,) * 3, (0.5,) * 3))
            data = attack.poison(train)
        fit(
            model,
            data,
            Recipe(epochs=4, batch_size=50, lr=0.05, crop_pad=0, hflip=False),
            CPU,
            progress=False,
        )
        _, info = NeuralCleanse(NO_EPOCHS, steps=100, batch_size=32).repair(model, ctx(100))
        name = "badnets" if attack else "clean"
        flagged[name], index[name] = info["flagged"], info["anomaly_index"]
        assert info["action"] == (
            "unlearned" if info["flagged"] else "none flagged: model returned unchanged"
        )
    assert flagged["badnets"] == [0] and 0 not in flagged["clean"]
    assert index["badnets"][0] > max(index["clean"])


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One model cache for the smoke cells below: each architecture's victim is trained once."""
    return f"cache_dir={tmp_path_factory.mktemp('cache')}"


@needs_fashion
@pytest.mark.parametrize("model", ["resnet18", "vgg11", "mobilenet"])
@pytest.mark.parametrize(
    "defense", [d for d in group_options("defense") if d not in ("none", "ft", "unit", "clip_uniform")]
)
def test_smoke_cell_per_defense_and_architecture(
    smoke_cfg, shared_cache: str, model: str, defense: str
) -> None:
    cfg, names = smoke_cfg(f"model={model}", "attack=badnets", f"defense={defense}", shared_cache)
    record = run_cell(cfg, names)
    assert record["defense"] == defense and record["defense_info"]
    for key in ("acc", "asr", "ra", "der"):
        assert 0 <= record[key] <= 100
