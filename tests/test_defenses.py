"""Behaviour of the baseline defenses (FP, NAD, ANP, NC, I-BAU, SEAM) and one smoke cell per defense
on each of resnet18, vgg11 and mobilenet."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn as nn

from bench.attacks.badnets import BadNets
from bench.core.engine import Recipe, fit
from bench.core.images import DataBundle
from bench.core.network import capture, classifier_head, head_features, stage_ends
from bench.defenses._reverse import CostSchedule
from bench.defenses.anp import ANP, BatchNormPerturbation
from bench.defenses.fp import FinePruning, MaskedLinear, pruned_before_break
from bench.defenses.ibau import IBAU
from bench.defenses.nad import NAD, AttentionDistillationLoss
from bench.defenses.nc import NeuralCleanse, anomaly_indices
from bench.defenses.seam import SEAM, WrongLabels
from bench.models import Normalized
from bench.models.mobilenet import mobilenet
from bench.models.resnet import resnet18
from bench.models.vgg import vgg11
from bench.run.cell import Cell
from bench.run.runner import run_cell
from tests.conftest import (
    CPU,
    NO_EPOCHS,
    ctx,
    group_options,
    needs_smoke_data,
    slow_params,
    toy_data,
    trained_toy_model,
)

DETECTORS = ("strip", "bna")  # repaired models that also flag triggered inputs (bench.defenses.Detector)


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


def test_nad_betas_weigh_each_term_as_on_the_original_maps() -> None:
    """ResNet-18's last three stages at 32x32 are 16, 8, 4 wide: a quarter of WRN-16-1's elements each,
    so the MSE over H*W weighs 4x; the betas are scaled down to match (null keeps them)."""
    model = trained_toy_model()
    layers = stage_ends(model, (3, 32, 32), 3)
    nad = NAD(Recipe(epochs=0), Recipe(epochs=0))
    assert nad.effective_betas(model, layers, (3, 32, 32)) == [125.0, 250.0, 250.0]
    plain = NAD(Recipe(epochs=0), Recipe(epochs=0), betas_at_hw=None)
    assert plain.effective_betas(model, layers, (3, 32, 32)) == [500, 1000, 1000]
    one = Recipe(epochs=1, batch_size=25, lr=0.01)
    _, info = NAD(one, one).repair(model, ctx(50))
    assert info["betas"] == [125.0, 250.0, 250.0]  # what ran is what the record says


def test_fp_stops_pruning_at_the_first_break() -> None:
    """A dip out of tolerance ends pruning there, though accuracy comes back further on."""
    accs = [0.90, 0.90, 0.89, 0.80, 0.88, 0.87, 0.70]
    assert pruned_before_break(accs, 0.05) == 2
    assert pruned_before_break(accs, 0.5) == 6


def test_anp_masks_stay_in_unit_interval_and_pruning_zeroes_bn_weights() -> None:
    model = trained_toy_model()
    biases = [m.bias.clone() for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    repaired, info = ANP(iterations=30, batch_size=32, mask_lr=2.0, threshold=0.9, tolerance=0.5).repair(
        model, ctx()
    )
    assert 0 <= info["mask_min"] <= info["mask_mean"] <= 1
    bns = [m for m in repaired.modules() if isinstance(m, nn.BatchNorm2d)]
    assert sum(int((bn.weight == 0).sum()) for bn in bns) == info["pruned"] > 0
    zeroed = {f"{name}:{k}" for name, bn in repaired.named_modules() if isinstance(bn, nn.BatchNorm2d)
              for k in torch.nonzero(bn.weight == 0).flatten().tolist()}  # fmt: skip
    assert set(info["pruned_neurons"]) == zeroed and len(info["pruned_neurons"]) == info["pruned"]
    assert all(0.9 < m <= 1.0 for m in info["near_threshold"].values())
    assert not zeroed & set(info["near_threshold"])
    assert all(
        torch.equal(bn.bias, b) for bn, b in zip(bns, biases, strict=True)
    )  # the mask scales gamma only
    assert info["neurons"] == len(BatchNormPerturbation(trained_toy_model()).flat_masks())


def test_anp_pruned_model_is_the_masked_model() -> None:
    """Pruning gives the model the masks were learnt on: masks at 0 for the pruned neurons, 1 elsewhere."""
    model = trained_toy_model().eval()
    x = toy_data(20, 5).x.float() / 255
    bnp = BatchNormPerturbation(model)
    pruned = torch.randperm(len(bnp.flat_masks()), generator=torch.Generator().manual_seed(0))[:40]
    flat = torch.ones(len(bnp.flat_masks()))
    flat[pruned] = 0
    with torch.no_grad():
        for mask, values in zip(bnp.masks, flat.split([len(m) for m in bnp.masks]), strict=True):
            mask.copy_(values)
        with bnp.attached(batch_stats=False):
            masked = model(x)
        bnp.prune(pruned)
        assert torch.allclose(model(x), masked, atol=1e-5)


@pytest.mark.parametrize("batch_stats", [True, False])
def test_anp_perturbed_bn_is_the_papers_formula(batch_stats: bool) -> None:
    """A masked, perturbed BN neuron outputs x_hat * (m + delta) * gamma + (1 + xi) * beta, x_hat normalised
    by the batch's statistics while learning (the running ones untouched) or by the running ones."""
    bn = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        bn.running_mean.copy_(torch.tensor([0.2, -0.1, 0.0]))
        bn.running_var.copy_(torch.tensor([1.5, 0.5, 2.0]))
    running = (bn.running_mean.clone(), bn.running_var.clone())
    bnp = BatchNormPerturbation(nn.Sequential(bn))
    with torch.no_grad():
        bnp.masks[0].copy_(torch.tensor([1.0, 0.5, 0.0]))
        bnp.noise_w[0].copy_(torch.tensor([0.1, -0.2, 0.3]))
        bnp.noise_b[0].copy_(torch.tensor([-0.3, 0.2, 0.1]))
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    if batch_stats:
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    else:
        mean, var = running
    x_hat = (x - mean[:, None, None]) / (var[:, None, None] + bn.eps).sqrt()
    for perturbed in (False, True):
        m = bnp.masks[0] + (bnp.noise_w[0] if perturbed else 0)
        b = 1 + (bnp.noise_b[0] if perturbed else 0)
        expected = x_hat * (m * bn.weight)[:, None, None] + (b * bn.bias)[:, None, None]
        bnp.perturbed = perturbed
        with torch.no_grad(), bnp.attached(batch_stats=batch_stats):
            out = bn(x)
        assert torch.allclose(out, expected, atol=1e-5)
    assert torch.equal(bn.running_mean, running[0]) and torch.equal(bn.running_var, running[1])
    assert torch.allclose(bn(x), nn.functional.batch_norm(x, *running, bn.weight, bn.bias, False, 0, bn.eps))


def test_anp_perturbation_moves_by_the_gradient_sign() -> None:
    """From zero noise, one ascent step of lr eps lands every neuron's noise on +-eps (the sign of its
    gradient), as the original's sign_grad does; a plain gradient step would move it by far less."""
    model = trained_toy_model()
    bnp = BatchNormPerturbation(model)
    bnp.reset_noise = lambda eps, gen: None  # start from zero noise
    data = toy_data(64, 3)
    anp = ANP(iterations=1, batch_size=64, eps=0.4, anp_steps=1, mask_lr=1e-9)
    with bnp.attached():
        anp.learn_masks(model, bnp, data.x.float() / 255, data.y, ctx())
    noise = torch.cat([t.detach() for t in (*bnp.noise_w, *bnp.noise_b)])
    moved = noise != 0
    assert moved.float().mean() > 0.9
    assert torch.allclose(noise[moved].abs(), torch.full_like(noise[moved], 0.4))


def test_anp_bf16_gradient_runs_the_convolutions_in_bf16_and_keeps_the_masks_float32() -> None:
    """``gradient=bf16``: the mask learning's convolutions output bf16, the masks stay float32 and end
    near where float32 learning puts them (a rounding of the same path, not another one)."""
    data = toy_data(64, 3)
    masks, seen = {}, []
    for gradient in ("fp32", "bf16"):
        model = trained_toy_model()
        conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        hook = conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
        bnp = BatchNormPerturbation(model)
        with bnp.attached():
            ANP(iterations=5, batch_size=32, gradient=gradient).learn_masks(
                model, bnp, data.x.float() / 255, data.y, ctx()
            )
        hook.remove()
        assert all(m.dtype == torch.float32 for m in bnp.masks)
        masks[gradient] = bnp.flat_masks()
    assert set(seen) == {torch.float32, torch.bfloat16} and seen[0] == torch.float32
    assert not torch.equal(masks["bf16"], masks["fp32"])
    assert (masks["bf16"] - masks["fp32"]).abs().max() < 0.05


def test_nc_anomaly_index_flags_the_small_outlier() -> None:
    norms = torch.tensor([50.0, 52, 48, 51, 49, 53, 47, 50, 3, 52])
    index = anomaly_indices(norms)
    assert index.argmax() == 8 and index[8] > 2 and (index[torch.arange(10) != 8] < 2).all()


def test_ibau_perturbation_is_universal() -> None:
    model = trained_toy_model()
    defense = IBAU(rounds=1, K=2, batch_size=50)
    x = torch.rand(50, 3, 32, 32)
    delta = defense.universal_perturbation(model.eval(), [(x, torch.zeros(50, dtype=torch.long))])
    assert delta.shape == (1, 3, 32, 32)
    before = [p.clone() for p in model.parameters()]
    _, info = defense.repair(model, ctx(100))
    assert info["perturbation_shape"] == [1, 3, 32, 32]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_ibau_projects_delta_only_when_given_a_radius() -> None:
    """The original's L2 projection is commented out: none by default, radius=R restores it."""
    model = trained_toy_model().eval()
    batches = [(torch.rand(50, 3, 32, 32), torch.zeros(50, dtype=torch.long))]
    free = IBAU(inner_lr=1000.0).universal_perturbation(model, batches)
    assert free.norm() > 10  # an SGD step of lr 1000 goes far: nothing pulled it back
    assert IBAU(inner_lr=1000.0, radius=10.0).universal_perturbation(model, batches).norm() <= 10 + 1e-4


def seam(**kw: Any) -> SEAM:
    forget = Recipe(epochs=50, batch_size=32, lr=1e-3, optimizer="adam", weight_decay=0, schedule="constant")
    recover = Recipe(epochs=5, batch_size=32, lr=1e-3, optimizer="adam", weight_decay=0, schedule="constant")
    return SEAM(forget, recover, **kw)


def test_seam_forgets_to_chance_then_recovers() -> None:
    model = trained_toy_model()
    _, info = seam(forget_ratio=0.2).repair(model, ctx())
    assert info["forget_acc_target"] == 20  # min(2 / 10 classes, 0.6)
    assert info["forget_set_acc_after_forget"] < 20 < info["defender_acc_before"]
    assert info["forget_epochs"] < 50  # stopped by the rule, not the cap
    assert info["defender_acc_after_recover"] > info["defender_acc_after_forget"]


def test_seam_forget_labels_are_wrong_and_redrawn_every_batch() -> None:
    hooks = WrongLabels(10, torch.Generator().manual_seed(0))
    y = torch.arange(1000) % 10
    x = torch.zeros(1000, 1)
    first, second = hooks.batch_hook(nn.Identity(), x, y)[1], hooks.batch_hook(nn.Identity(), x, y)[1]
    assert (first != y).all() and (second != y).all()
    assert not torch.equal(first, second)
    assert torch.bincount(first, minlength=10).min() > 50  # every class is drawn


@pytest.mark.slow  # 70-120 s; and its index sits near 2: on this Xeon it passes with 2 threads, not 1
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
        _, info = NeuralCleanse(NO_EPOCHS, steps=120, batch_size=32, epoch_steps=3).repair(model, ctx(100))
        name = "badnets" if attack else "clean"
        flagged[name], index[name] = info["flagged"], info["anomaly_index"]
        assert info["action"] == (
            "unlearned" if info["flagged"] else "none flagged: model returned unchanged"
        )
    assert flagged["badnets"] == [0] and 0 not in flagged["clean"]
    assert index["badnets"][0] > max(index["clean"])


def test_nc_cost_starts_at_zero_and_is_set_once_the_trigger_succeeds() -> None:
    """As bolunwang/backdoor: cost 0 until `patience` successful epochs, then init_cost, then x2 / /2^1.5."""
    schedule = CostSchedule(init_cost=1e-3, threshold=0.99, patience=5)
    assert schedule.cost == 0
    for _ in range(4):
        schedule.update(1.0)
    assert schedule.cost == 0
    schedule.update(0.5)  # a failure resets the count
    for _ in range(4):
        schedule.update(0.995)
    assert schedule.cost == 0
    schedule.update(0.995)
    assert schedule.cost == 1e-3
    for _ in range(5):
        schedule.update(1.0)
    assert schedule.cost == 2e-3 and not schedule.moved_both_ways
    for _ in range(5):
        schedule.update(0.98)  # below the 0.99 threshold
    assert schedule.cost == pytest.approx(2e-3 / 2**1.5) and schedule.moved_both_ways


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One model cache for the smoke cells below: each architecture's victim is trained once."""
    return f"cache_dir={tmp_path_factory.mktemp('cache')}"


VIT_ONLY = ("unit_attention",)  # a ViT's: test_unit.py runs UNIT on one, test_experiments its experiment


@needs_smoke_data
@pytest.mark.parametrize("model", ["resnet18", *slow_params("vgg11", "mobilenet")])
@pytest.mark.parametrize(
    "defense",
    [d for d in group_options("defense") if d not in ("none", "ft", "unit", "clip_uniform", *VIT_ONLY)],
)
def test_smoke_cell_per_defense_and_architecture(
    smoke_cfg, shared_cache: str, model: str, defense: str
) -> None:
    cfg, names = smoke_cfg(f"model={model}", "attack=badnets", f"defense={defense}", shared_cache)
    record = run_cell(Cell.of(cfg, names))
    assert record.defense == defense and record.defense_info
    # what the defense says it did, it did: a detector adds test-time detection, a defense that reports
    # leaving the model unchanged changed no prediction, any other changed some
    unchanged = "unchanged" in record.defense_info.get("action", "")
    if unchanged or defense == "strip":  # STRIP only flags inputs
        assert (record.acc, record.asr) == (record.acc_before, record.asr_before)
    if defense in DETECTORS and not unchanged:
        assert set(record.detection_info) == {"fpr", "tpr"}
    elif not unchanged and defense != "strip" and record.acc_before > 100 / 10 + 10:
        # only on a victim above chance: one machine's 2-epoch smoke victim sat at 17.8% ACC, predicting the
        # target almost always, and SEAM's forget-and-recover came back to the same predictions
        assert (record.acc, record.asr, record.ra) != (record.acc_before, record.asr_before, record.ra_before)
