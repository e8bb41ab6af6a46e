"""The trigger searches of Neural Cleanse and BNA are stepped together, in passes of any size, and each
takes exactly the steps it takes alone: its own batches, optimiser, cost schedule and early stop."""

from __future__ import annotations

import pytest
import torch

from bench.core.images import to_float
from bench.defenses._reverse import TriggerSearch
from tests.conftest import toy_data, trained_toy_model


def test_searches_side_by_side_equal_each_search_alone() -> None:
    model = trained_toy_model().eval().requires_grad_(False)
    x = to_float(toy_data(200, seed=1).x)
    pools = [x, x[:120], x[60:]]  # pools of different sizes: each search its own epoch length
    # images_per_pass=32: two searches a pass, so the split is exercised
    search = TriggerSearch(steps=240, batch_size=16, lr=0.1, init_cost=1e-3, asr_threshold=0.9, patience=2,
                           epoch_steps=None, early_stop_patience=3, images_per_pass=32)  # fmt: skip

    def gens() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(50 + i) for i in range(3)]

    together = search.run_many(model, pools, [0, 4, 7], gens(), progress=False)
    alone = [search.run(model, pool, target, gen, progress=False)
             for pool, target, gen in zip(pools, [0, 4, 7], gens(), strict=True)]  # fmt: skip
    assert len({r["steps"] for r in alone}) > 1  # the searches stop at different steps
    for a, b in zip(together, alone, strict=True):
        assert a["steps"] == b["steps"] and a.get("failed") == b.get("failed")
        assert a["l1"] == pytest.approx(b["l1"], rel=1e-4) and a["final_cost"] == b["final_cost"]
        assert torch.allclose(a["mask"], b["mask"], atol=1e-4) and a["mask"].shape == (1, 1, 32, 32)


def test_bf16_gradient_runs_the_model_in_bf16_and_keeps_the_trigger_float32() -> None:
    """``gradient=bf16``: the model's convolutions output bf16 while the mask and pattern stay float32,
    and the search moves them the way the float32 search does (a rounding of the same path)."""
    model = trained_toy_model().eval().requires_grad_(False)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    seen: list[torch.dtype] = []
    hook = conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    x = to_float(toy_data(64, seed=1).x)
    moved = {}
    for gradient in ("fp32", "bf16"):
        search = TriggerSearch(steps=5, batch_size=16, lr=0.1, init_cost=1e-3, asr_threshold=1.0, patience=2,
                               epoch_steps=None, gradient=gradient)  # fmt: skip
        result = search.run(model, x, 3, torch.Generator().manual_seed(0), progress=False)
        assert result["mask"].dtype == result["pattern"].dtype == torch.float32
        moved[gradient] = torch.cat([(result["mask"] - 0.5).flatten(), (result["pattern"] - 0.5).flatten()])
    hook.remove()
    assert set(seen[:5]) == {torch.float32} and set(seen[5:]) == {torch.bfloat16}
    assert not torch.equal(moved["bf16"], moved["fp32"])
    assert torch.nn.functional.cosine_similarity(moved["bf16"], moved["fp32"], dim=0) > 0.9


def test_pass_size_groups_the_searches_into_passes_without_changing_them() -> None:
    """``images_per_pass``: None makes one pass per search on the CPU (measured the faster there), a size
    groups as many searches as fit; every grouping ends each search where the others do."""
    model = trained_toy_model().eval().requires_grad_(False)
    passes: list[int] = []
    model.register_forward_hook(lambda _m, inputs, _out: passes.append(len(inputs[0])))
    x = to_float(toy_data(64, seed=1).x)
    results = {}
    for size, expected in ((None, [16] * 12), (48, [48] * 4), (32, [32, 16] * 4), (1, [16] * 12)):
        search = TriggerSearch(steps=4, batch_size=16, lr=0.1, init_cost=1e-3, asr_threshold=0.9, patience=2,
                               epoch_steps=None, images_per_pass=size)  # fmt: skip
        passes.clear()
        gens = [torch.Generator().manual_seed(7 + i) for i in range(3)]
        results[size] = search.run_many(model, [x, x[:40], x[20:]], [1, 2, 3], gens, progress=False)
        assert passes == expected
    for size in (48, 32, 1):
        for a, b in zip(results[None], results[size], strict=True):
            assert a["l1"] == pytest.approx(b["l1"], rel=1e-4)
            assert torch.allclose(a["mask"], b["mask"], atol=1e-4)
    assert TriggerSearch(1, 16, 0.1, 1e-3, 0.9, 2).searches_per_pass(torch.device("cuda")) == 32
