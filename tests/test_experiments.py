"""The grid experiments expand to the cells the paper needs, pick up a new attack or defense by globbing
its config group, and the CPU grids reuse their settings' victims."""

from __future__ import annotations

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import create_config_search_path
from hydra.core.override_parser.overrides_parser import OverridesParser

from bench.catalogue import CONF_DIR
from bench.config import compose_config
from bench.run.identity import semantic_config, victim_key
from tests.conftest import compose_cfg, group_options

# not in Table 1's mitigation grid: the detectors and baselines, and the appendix's newer defenses
DETECTORS_AND_BASELINES = {"strip", "clip_uniform", "clp", "ft_sam", "fst", "rnp", "super_ft"}
DETECTORS_AND_BASELINES |= {"unit_attention"}  # UNIT on a ViT's attention layers (experiment=transformer)
APPENDIX_ATTACKS = {"combat", "narcissus"}  # the appendix's newer attacks: not Table 1 or Fig. 5 rows


def cells(experiment: str) -> list[dict[str, str]]:
    """The jobs ``python -m bench -m experiment=<experiment>`` launches, as {group: option}."""
    cfg = compose_config([f"experiment={experiment}"], return_hydra_config=True)
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(params)
    batches = BasicSweeper.split_arguments(parsed, None)
    return [dict(o.split("=", 1) for o in job) for batch in batches for job in batch]


@pytest.mark.parametrize("experiment", ["table1", "cpu_table1", "cpu_cifar_table1"])
def test_table1_grids_cover_every_attack_and_mitigation(experiment: str) -> None:
    jobs = cells(experiment)
    attacks = sorted(set(group_options("attack")) - APPENDIX_ATTACKS)
    defenses = sorted(set(group_options("defense")) - DETECTORS_AND_BASELINES)
    assert sorted({j["attack"] for j in jobs}) == attacks and "none" in attacks
    assert sorted({j["defense"] for j in jobs}) == defenses and "none" in defenses
    assert len(jobs) == len(attacks) * len(defenses)


def test_fig5_and_clean_models_cover_the_six_pairs() -> None:
    pairs = group_options("pair")
    assert len(pairs) == 6
    fig5 = cells("fig5")
    assert len(fig5) == 6 * len(set(group_options("attack")) - APPENDIX_ATTACKS) * 2
    assert {j["defense"] for j in fig5} == {"none", "unit"} and {j["pair"] for j in fig5} == set(pairs)
    clean = cells("clean_models")
    assert {j["attack"] for j in clean} == {"none"} and {j["pair"] for j in clean} == set(pairs)


@pytest.mark.parametrize("pair", group_options("pair"))
def test_pair_sets_dataset_and_model(pair: str) -> None:
    _, names = compose_cfg([f"pair={pair}"])
    assert f"{names['dataset']}_{names['model']}" == pair


@pytest.mark.parametrize("experiment", ["cpu_cifar", "table1"])
def test_a_pair_overrides_the_architecture_an_experiment_pins(experiment: str) -> None:
    """Fig. 5's second panel is `experiment=cpu_cifar pair=cifar10_vgg11`: the pair, not the experiment's
    ResNet-18, must decide the architecture, and the experiment's width must still apply."""
    alone = compose_config([f"experiment={experiment}"])
    cfg, names = compose_cfg([f"experiment={experiment}", "pair=cifar10_vgg11"])
    assert (names["dataset"], names["model"]) == ("cifar10", "vgg11")
    assert cfg.model.width == alone.model.width and cfg.model._target_.endswith("vgg11")


@pytest.mark.parametrize("attack", ["badnets", "ia", "issba", "dfst", "lira"])
@pytest.mark.parametrize(("setting", "grid"), [("cpu", "cpu_table1"), ("cpu_cifar", "cpu_cifar_table1")])
def test_cpu_grids_reuse_their_settings_victims(setting: str, grid: str, attack: str) -> None:
    """Shrinking the defenses' budget must not retrain the victims (their auxiliary networks included)."""
    keys = []
    for experiment in (setting, grid):
        sem = semantic_config(*compose_cfg([f"experiment={experiment}", f"attack={attack}"]))
        keys.append(victim_key(sem, sem["attack"]))
    assert keys[0] == keys[1]
    table1 = compose_config([f"experiment={grid}", "defense=bna"])
    assert table1.defense.steps < compose_config([f"experiment={setting}", "defense=bna"]).defense.steps


@pytest.mark.parametrize(
    ("defense", "key", "original"), [("anp", "iterations", 2000), ("nc", "steps", 31000)]
)
def test_cifar_grid_keeps_the_lengths_at_which_anp_and_nc_work(defense: str, key: str, original: int) -> None:
    """budget.scale_of: the grid shrinks the others x0.1 but keeps ANP's and NC's original lengths."""
    cfg = compose_config(["experiment=cpu_cifar_table1", f"defense={defense}"])
    assert cfg.defense[key] == original and cfg.budget.scale == 0.1
    shrunk = compose_config(
        ["experiment=cpu_cifar_table1", f"defense={defense}", f"budget.scale_of.{defense}=0.1"]
    )
    assert shrunk.defense[key] == round(original * 0.1)


@pytest.mark.parametrize(("preset", "gpus"), [("slurm_gpu", 1), ("slurm_cpu", None)])
def test_slurm_launcher_presets_extend_submitit(preset: str, gpus: int | None) -> None:
    launcher = compose_config([f"hydra/launcher={preset}"], return_hydra_config=True).hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.gpus_per_node == gpus and launcher.timeout_min > 0 and launcher.array_parallelism > 0


def test_appendix_and_transformer_experiments_sweep_their_cells() -> None:
    """Appendix A.2: the newer attacks x no defense, the newer defenses and UNIT; Section 5.2: BadNets x no
    defense and UNIT on the attention layers of the ViT; both with the cpu_cifar Table 1 budget."""
    assert cells("appendix_a2") == [
        {"attack": a, "defense": d}
        for a in ("combat", "narcissus")
        for d in ("none", "clp", "fst", "rnp", "ft_sam", "super_ft", "unit")
    ]
    assert cells("transformer") == [{"attack": "badnets", "defense": d} for d in ("none", "unit_attention")]
    cfg = compose_config(["experiment=transformer", "defense=unit_attention"])
    assert cfg.model.name.startswith("vit") and list(cfg.defense.activations) == ["Attention"]
    table1 = compose_config(["experiment=cpu_cifar_table1"])
    for experiment in ("appendix_a2", "transformer"):
        assert compose_config([f"experiment={experiment}"]).budget == table1.budget
