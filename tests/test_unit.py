"""UNIT and uniform clipping: the bound mechanism, its gradients, the schedules, the guarantees."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from bench.core import engine
from bench.core.images import ImageSet
from bench.defenses import unit as unit_module
from bench.defenses._base import DefenderContext, accuracy, split_train_val
from bench.defenses._bounds import (
    BoundedActivation,
    activation_statistics,
    find_activations,
    wrap_activations,
)
from bench.defenses.clip_uniform import UniformClip
from bench.defenses.unit import UNIT, AlphaSchedule
from bench.models.resnet import resnet18
from bench.run.cell import Cell
from bench.run.runner import run_cell
from tests.conftest import needs_smoke_data, slow_params, toy_data, trained_toy_model

CPU = torch.device("cpu")


def test_clipped_forward_is_minimum_with_relu_bound() -> None:
    model = resnet18(10, width=0.125).eval()
    layers = find_activations(model, (nn.ReLU,))
    x = torch.rand(4, 3, 32, 32)
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: seen.__setitem__(n, o)) for n, m in layers]
    model(x)
    for h in hooks:
        h.remove()
    bounds = {n: torch.randn(seen[n].shape[1:]) for n, _ in layers}
    wrap_activations(model, bounds)
    clipped: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for n, _ in layers:
        module = model.get_submodule(n)
        assert isinstance(module, BoundedActivation)
        module.act.register_forward_hook(lambda _m, _i, o, n=n: clipped.__setitem__(n, (o,)))
        module.register_forward_hook(lambda _m, _i, o, n=n: clipped.__setitem__(n, (*clipped[n], o)))
    model(x)
    for n, _ in layers:
        pre, post = clipped[n]
        assert torch.equal(post, torch.minimum(pre, torch.relu(bounds[n])))


def test_bound_gradient_only_where_activation_exceeds_bound() -> None:
    act = BoundedActivation(nn.ReLU(), torch.tensor([0.5, 0.5, -0.2, 2.0]).requires_grad_(True))
    x = torch.tensor([[1.0, 0.1, 3.0, 1.0], [0.2, 0.7, 0.0, 1.5]])
    act(x).sum().backward()
    # element 0: exceeded once; 1: exceeded once; 2: bound below 0 acts as 0, no gradient; 3: never.
    assert act.bound.grad.tolist() == [1.0, 1.0, 0.0, 0.0]


def test_no_activation_module_is_a_clear_error() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    ctx = DefenderContext(toy_data(50), 10, CPU, progress=False)
    with pytest.raises(ValueError, match="has no activation module of type ReLU"):
        UNIT().repair(model, ctx)


def test_paper_schedule_halves_after_a_step_that_broke_eps() -> None:
    s = AlphaSchedule("paper", 1e-3, patience=5)
    s.update(feasible=True)
    assert s.alpha == pytest.approx(2e-3)
    s.update(feasible=False)
    assert s.alpha == pytest.approx(1e-3)


def test_code_schedule_uses_patience() -> None:
    s = AlphaSchedule("code", 1e-3, patience=5)
    for _ in range(4):
        s.update(feasible=True)
    assert s.alpha == pytest.approx(1e-3)
    s.update(feasible=True)
    assert s.alpha == pytest.approx(2e-3)
    for _ in range(5):
        s.update(feasible=False)
    assert s.alpha == pytest.approx(2e-3 / 2**1.5)


def test_split_is_per_class_4_to_1() -> None:
    train, val = split_train_val(toy_data(200), 0.2, seed=0)
    assert torch.bincount(val.y).tolist() == [4] * 10 and torch.bincount(train.y).tolist() == [16] * 10


@pytest.mark.parametrize("schedule", ["paper", "code"])
def test_unit_keeps_validation_accuracy_within_eps(schedule: str) -> None:
    model = trained_toy_model()
    data = toy_data(200, seed=2)
    _, val = split_train_val(data, 0.2, seed=0)
    x_val, y_val = val.x.float() / 255, val.y
    acc0 = accuracy(model.eval(), x_val, y_val)
    # default: no early stop, as the reference; no crop (it moves the toy classes' row bands)
    unit = UNIT(eps=0.05, steps=40, schedule=schedule, augment="none")
    repaired, info = unit.repair(model, DefenderContext(data, 10, CPU, progress=False))
    assert acc0 - accuracy(repaired, x_val, y_val) <= 0.05 + 1e-9
    assert info["bound_l1_final"] <= info["bound_l1_init"]
    assert info["steps_run"] == 40 and not info["early_stopped"]
    assert info["layers"] == 17 and all(not p.requires_grad for p in repaired.buffers())
    state = repaired.state_dict()
    assert "net.layer1.0.act1.bound" in state  # bounds are ordinary buffers: saved and loaded with the model


def test_uniform_clip_bounds_match_statistics() -> None:
    model = resnet18(10, width=0.125).eval()
    data = toy_data(60)
    stats = activation_statistics(model, find_activations(model, (nn.ReLU,)), data.x, CPU)
    repaired, info = UniformClip(z=2.0).repair(model, DefenderContext(data, 10, CPU, progress=False))
    bound = repaired.get_submodule("layer2.0.act1").bound
    assert torch.allclose(bound, stats["layer2.0.act1"]["mean"] + 2.0 * stats["layer2.0.act1"]["std"])
    assert info["layers"] == 17


@needs_smoke_data
@pytest.mark.parametrize("model", ["resnet18", *slow_params("preact_resnet18", "vgg11", "mobilenet")])
def test_unit_smoke_cell_on_architectures(smoke_cfg, model: str) -> None:
    cfg, names = smoke_cfg(f"model={model}", "defense=unit", "defense.steps=10")
    record = run_cell(Cell.of(cfg, names))
    info = record.defense_info
    assert info["steps_run"] == 10 and not info["early_stopped"]
    if info["found_feasible"]:  # the bounds it keeps meet its own validation constraint (eps 2%)
        assert info["val_acc_after"] >= info["val_acc_before"] - 2.0


def test_inference_path_matches_and_repaired_model_can_be_fine_tuned() -> None:
    model = resnet18(10, width=0.125).eval()
    layers = find_activations(model, (nn.ReLU,))
    x = torch.rand(3, 3, 32, 32)
    stats = activation_statistics(model, layers, (x * 255).to(torch.uint8), CPU)
    wrap_activations(model, {n: s["mean"] for n, s in stats.items()})
    with torch.no_grad():
        fast = model(x)
    slow = model(x)  # grad enabled, bounds constant: the out-of-place path
    assert torch.allclose(fast, slow)
    slow.sum().backward()  # weights still train through a clipped model
    assert model.conv1.weight.grad is not None


def test_paper_schedule_alpha_stays_finite_for_adam() -> None:
    s = AlphaSchedule("paper", 1e-3, patience=5)
    for _ in range(500):
        s.update(feasible=True)
    assert s.alpha == pytest.approx(1e-3 * 2.0**40)
    bound = torch.ones(16, requires_grad=True)
    opt = torch.optim.Adam([bound], lr=1e-3)
    (s.alpha * bound.mean()).backward()
    opt.step()
    assert bound.detach().lt(1).all()  # the step still moves the bounds


def halves_data(n: int = 100) -> ImageSet:
    """Class 0: a bright top half; class 1: a bright bottom half (a little noise on both)."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randint(0, 10, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    x[y == 0, :, :16] += 200
    x[y == 1, :, 16:] += 200
    return ImageSet(x, y)


def halves_model() -> nn.Module:
    """h_c = relu(mean brightness of half c - 0.45), about 0.33 on its own class and 0 otherwise; logits
    (h_0, h_1, 0.15, -10, ...): a bound below 0.15 on h_c sends class c to class 2."""
    features, head = nn.Linear(3 * 32 * 32, 2), nn.Linear(2, 10)
    with torch.no_grad():
        w = torch.zeros(2, 3, 32, 32)
        w[0, :, :16], w[1, :, 16:] = 1 / (3 * 16 * 32), 1 / (3 * 16 * 32)
        features.weight.copy_(w.flatten(1))
        features.bias.fill_(-0.45)
        head.weight.zero_()
        head.weight[0, 0] = head.weight[1, 1] = 1.0
        head.bias.fill_(-10.0)
        head.bias[:3] = torch.tensor([0.0, 0.0, 0.15])
    return nn.Sequential(nn.Flatten(), features, nn.ReLU(), head)


@pytest.mark.parametrize("schedule", ["paper", "code"])
def test_unit_accepts_the_first_feasible_bounds_when_the_initial_ones_break_eps(schedule: str) -> None:
    """The reference starts from "no bound yet": bounds looser than sigma0 are kept when sigma0 itself
    breaks the accuracy rule (sigma0 = mean - 0.33 std, about 0.10, sends class 0 and 1 to class 2)."""
    data = halves_data()
    _, val = split_train_val(data, 0.2, seed=0)
    unit = UNIT(eps=0.02, steps=40, lr=0.01, init_std=-0.33, augment="none", schedule=schedule)
    repaired, info = unit.repair(halves_model(), DefenderContext(data, 10, CPU, progress=False))
    assert not info["init_within_eps"] and info["found_feasible"] and info["best_step"] > 0
    assert info["bound_l1_final"] > info["bound_l1_init"]  # the feasible bounds are looser than sigma0
    assert accuracy(repaired, val.x.float() / 255, val.y) == 1.0  # what it reports is what it returns
    assert info["val_acc_after"] == 100.0


def test_unit_without_a_feasible_step_returns_its_last_bounds_and_says_so() -> None:
    data = halves_data()
    unit = UNIT(eps=0.02, steps=3, lr=1e-4, init_std=-0.33, augment="none")
    _, info = unit.repair(halves_model(), DefenderContext(data, 10, CPU, progress=False))
    assert not info["found_feasible"] and info["best_step"] is None and info["steps_run"] == 3
    assert info["bound_l1_final"] != info["bound_l1_init"]  # the last bounds, not sigma0


def test_unit_early_stop_is_an_option() -> None:
    data = halves_data()
    unit = UNIT(eps=0.02, steps=200, lr=0.01, init_std=4.0, augment="none", stop_patience=5)
    _, info = unit.repair(halves_model(), DefenderContext(data, 10, CPU, progress=False))
    assert info["early_stopped"] and info["steps_run"] < 200


def test_unit_optimises_in_float32_under_bf16_precision() -> None:
    """The bound gradients are float32 whatever ``precision`` says (bf16 would round bounds of 1-4 to
    0.008-0.016, coarser than one Adam step)."""
    seen = []
    data = halves_data()
    model = halves_model()
    model[2].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    with engine.precision("bf16"):
        UNIT(eps=0.02, steps=2, augment="none").repair(model, DefenderContext(data, 10, CPU, progress=False))
    assert seen and set(seen) == {torch.float32}


@pytest.mark.parametrize("augment", ["frozen", "frozen_all", "per_step", "none"])
def test_unit_augment_modes_run(augment: str) -> None:
    data = halves_data()
    _, info = UNIT(eps=0.02, steps=2, augment=augment).repair(
        halves_model(), DefenderContext(data, 10, CPU, progress=False)
    )
    assert info["steps_run"] == 2


def bounded_toy() -> tuple[nn.Module, list[BoundedActivation], torch.Tensor, torch.Tensor]:
    """A frozen toy model with trainable bounds at mean + std on every ReLU, and 50 images to step on."""
    model = trained_toy_model().eval().requires_grad_(False)
    layers = find_activations(model, (nn.ReLU,))
    data = toy_data(50, seed=4)
    stats = activation_statistics(model, layers, data.x, CPU)
    modules = wrap_activations(model, {n: s["mean"] + s["std"] for n, s in stats.items()})
    for m in modules:
        m.bound.requires_grad_(True)
    return model, modules, data.x.float() / 255, data.y


def test_chunked_step_gradient_is_the_full_batch_gradient(monkeypatch) -> None:
    """The step's gradient in CHUNK-sized passes equals one pass over the whole batch (the reference's)."""
    model, modules, x, y = bounded_toy()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    full = [m.bound.grad.clone() for m in modules]
    assert any(g.abs().sum() > 0 for g in full)
    for m in modules:
        m.bound.grad = None
    monkeypatch.setattr(unit_module, "CHUNK", 16)  # 50 images: passes of 16, 16, 16 and 2
    unit_module.accumulate_ce_gradient(model, x, y)
    for g, m in zip(full, modules, strict=True):
        assert torch.allclose(g, m.bound.grad, atol=1e-6)


def test_bf16_gradient_option_runs_the_step_in_bf16_and_keeps_the_bounds_float32() -> None:
    """``gradient=bf16``: the activations of each step's pass are bf16, the bounds and their gradient
    float32, and the gradient a bf16 rounding of the float32 one (close, not equal)."""
    model, modules, x, y = bounded_toy()
    grads, seen = {}, []
    hook = modules[0].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    for gradient in ("fp32", "bf16"):
        for m in modules:
            m.bound.grad = None
        unit_module.accumulate_ce_gradient(model, x, y, gradient)
        grads[gradient] = torch.cat([m.bound.grad.flatten() for m in modules])
    hook.remove()
    assert seen == [torch.float32, torch.bfloat16]
    assert grads["bf16"].dtype == torch.float32 and all(m.bound.dtype == torch.float32 for m in modules)
    assert not torch.equal(grads["bf16"], grads["fp32"])
    assert torch.nn.functional.cosine_similarity(grads["bf16"], grads["fp32"], dim=0) > 0.95


def tiny_vit() -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10
    ).eval()


def test_unit_bounds_a_vits_attention_layers() -> None:
    """``activations=[Attention]`` finds a timm ViT's attention layers by their type; infinite bounds leave
    its output unchanged, and UNIT runs end to end on it (the paper's Section 5.2)."""
    from bench.defenses._bounds import activation_types, find_activations, wrap_activations

    model = tiny_vit()
    layers = find_activations(model, activation_types(["Attention"]))
    assert [n for n, _ in layers] == ["blocks.0.attn", "blocks.1.attn"]
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        wrap_activations(model, {n: torch.full((17, 32), float("inf")) for n, _ in layers})
        assert torch.equal(model(x), before)
    data = toy_data(60)
    repaired, info = UNIT(eps=0.05, steps=3, augment="none", activations=("Attention",)).repair(
        tiny_vit(), DefenderContext(data, 10, CPU, progress=False)
    )
    bounded = [m for m in repaired.modules() if type(m).__name__ == "BoundedActivation"]
    assert len(bounded) == 2 and bounded[0].bound.shape == (17, 32)  # 16 patches + the class token


@pytest.mark.parametrize(("augment", "augmented"), [("frozen", [80]), ("frozen_all", [80, 20]), ("none", [])])
def test_frozen_all_also_augments_the_validation_images(
    monkeypatch, augment: str, augmented: list[int]
) -> None:
    """The reference draws one crop/flip of every defender image it collects, its validation images
    included: ``frozen_all`` does the same after the training split's draw, ``frozen`` only that draw."""
    seen = []

    def counted(x: torch.Tensor, *args: object) -> torch.Tensor:
        seen.append(len(x))
        return x

    monkeypatch.setattr(unit_module, "augment_batch", counted)
    UNIT(eps=0.02, steps=1, augment=augment).repair(
        halves_model(), DefenderContext(halves_data(), 10, CPU, progress=False)
    )
    assert seen == augmented
