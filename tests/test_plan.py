"""The dry run's time estimate comes from this machine's records of the same setting, and says so when
it has none."""

from __future__ import annotations

from omegaconf import OmegaConf

from bench.config import compose_config
from bench.run.host import compute_info
from bench.run.identity import semantic_config
from bench.run.plan import duration, estimate_seconds, plan_line
from tests.conftest import compose_cfg


def record(overrides: list[str], attack: str, defense: str, **fields: object) -> dict:
    config = OmegaConf.to_container(
        compose_config([f"attack={attack}", f"defense={defense}", *overrides]), resolve=True
    )
    times = {"defense_s": 100.0, "eval_s": 10.0, "attack_train_s": 1000.0, "aux_train_s": 0.0}
    return {
        "dataset": "cifar10",
        "model": "resnet18",
        "attack": attack,
        "defense": defense,
        "config": config,
        "compute": compute_info(),
        **times,
        **fields,
    }


def test_estimate_from_records_of_the_same_setting_on_this_machine() -> None:
    base = ["experiment=smoke"]
    sem = semantic_config(*compose_cfg([*base, "attack=badnets", "defense=ft", "seed=3"]))
    names = {"attack": "badnets", "defense": "ft"}
    records = [
        record(base, "badnets", "ft"),
        record(base, "badnets", "ft", defense_s=300.0),
        record(base, "badnets", "ft", defense_s=200.0),
        record(base, "blend", "none"),  # another defense: not this cell's defense time
    ]
    assert estimate_seconds(sem, names, False, records) == 210.0  # median defense + eval, any seed
    assert estimate_seconds(sem, names, True, records) == 1210.0  # + the victim's training
    other_cpu = [{**r, "compute": {**r["compute"], "threads": 999}} for r in records]
    assert estimate_seconds(sem, names, False, other_cpu) is None  # another machine's times say nothing
    no_bf16 = not compute_info()["cpu_bf16"]
    other_isa = [{**r, "compute": {**r["compute"], "cpu_bf16": no_bf16}} for r in records]
    assert estimate_seconds(sem, names, False, other_isa) is None  # one name, another kind of core
    older = [{**r, "compute": {k: v for k, v in r["compute"].items() if k not in ("isa", "cpu_bf16")}}
             for r in records]  # fmt: skip
    assert estimate_seconds(sem, names, False, older) == 210.0  # records before the keys: name and threads
    wider = semantic_config(*compose_cfg([*base, "attack=badnets", "defense=ft", "model_width=0.5"]))
    assert estimate_seconds(wider, names, False, records) is None  # another recipe: no estimate
    assert estimate_seconds(sem, {"attack": "sig", "defense": "ft"}, True, records) is None


def test_plan_line_gives_the_estimate_or_says_it_has_none() -> None:
    plan = {"cell": "c", "record": "r", "recorded": False, "victim_cached": True, "estimate_s": 5400.0}
    assert plan_line(plan).endswith("run, reusing the cached victim, about 1h30m -> r")
    assert "no estimate" in plan_line({**plan, "estimate_s": None})
    assert duration(20) == "1 min" and duration(600) == "10 min"
