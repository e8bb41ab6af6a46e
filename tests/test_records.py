"""Committed records stay valid: their ids are the hash of their own stored config, and the grid's
documented command still composes to the ids it wrote (keys added since are out of the hash at their
defaults)."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from bench.run import host
from bench.run.identity import LATER_KEYS, cell_id, plugin_identity, semantic_config, victim_key
from tests.conftest import REPO, compose_cfg

COMMITTED = sorted((REPO / "results").glob("**/runs/**/*.json"))


def names_of(record: dict) -> dict[str, str]:
    return {g: record[g] for g in ("dataset", "model", "attack", "defense")}


def composed_id(overrides: list[str]) -> str:
    """The cell id ``python -m bench <overrides>`` records under."""
    cfg, names = compose_cfg(overrides)
    return cell_id(names, semantic_config(cfg, names))


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO / "results")))
def test_committed_record_id_is_the_hash_of_its_config(path) -> None:
    record = json.loads(path.read_text())
    assert (
        cell_id(names_of(record), semantic_config(OmegaConf.create(record["config"]), names_of(record)))
        == record["cell_id"]
    )
    assert path.stem == record["cell_id"]


@pytest.mark.parametrize("attack", ["badnets", "blend", "none"])
def test_grid_command_recomposes_committed_ids(attack: str) -> None:
    cfg, names = compose_cfg(["experiment=cpu_table1", f"attack={attack}", "defense=none"])
    for dotted, default in LATER_KEYS.items():  # every later key the config has is at its default
        value = OmegaConf.to_container(cfg, resolve=True)
        for part in dotted.split("."):
            value = value.get(part, LATER_KEYS) if isinstance(value, dict) else LATER_KEYS
        if value is LATER_KEYS:  # a plug-in without the key (only Adap-Blend has a pattern kind)
            continue
        if isinstance(value, dict):  # budget.scale_of lists its defenses at null (= no entry)
            value = {k: v for k, v in value.items() if v is not None}
        assert value == default
    cid = cell_id(names, semantic_config(cfg, names))
    assert (REPO / "results" / "cpu" / "runs" / "table1" / f"{cid}.json").is_file()


def test_a_later_key_away_from_its_default_changes_the_id() -> None:
    cfg, names = compose_cfg(["experiment=cpu_table1", "attack=badnets", "defense=none"])
    before = cell_id(names, semantic_config(cfg, names))
    cfg.precision = "bf16"
    assert cell_id(names, semantic_config(cfg, names)) != before


def readme_cells() -> list[list[str]]:
    """The cells of the README's cpu_cifar example commands, as override lists (``-m`` lists expanded)."""
    cells = []
    for line in (REPO / "README.md").read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words[:3] != ["python", "-m", "bench"] or "experiment=cpu_cifar" not in words or "--cfg" in words:
            continue
        overrides = [w for w in words[3:] if w != "-m" and not w.startswith("dry_run")]
        choices = [[f"{w.split('=', 1)[0]}={v}" for v in w.split("=", 1)[1].split(",")] for w in overrides]
        cells += [list(c) for c in itertools.product(*choices)]
    return cells


@pytest.mark.parametrize("overrides", readme_cells(), ids=" ".join)
def test_readme_commands_find_their_committed_records(overrides: list[str]) -> None:
    """Running the README's examples adds no record to a tracked folder: each composes to a committed one."""
    assert (REPO / "results" / "cpu_cifar" / "runs_v2" / f"{composed_id(overrides)}.json").is_file()


@pytest.mark.parametrize("defense", ["none", "ft"])
def test_the_cpu_cifar_recipe_is_run_a_of_the_study(defense: str) -> None:
    """The recipe issue 37 chose: ``cpu_cifar``'s cells are the study's run A in float32, cell for cell."""
    cell = ["attack=badnets", f"defense={defense}"]
    assert composed_id(["experiment=cpu_cifar", *cell]) == composed_id(
        ["experiment=cpu_cifar_study", "precision=fp32", *cell]
    )


RECIPE_RECORDS = sorted((REPO / "results" / "cpu_cifar" / "runs_v2").glob("*.json"))


@pytest.mark.parametrize("path", RECIPE_RECORDS, ids=lambda p: p.stem)
def test_every_recipe_record_is_its_cells_cpu_cifar_command(path) -> None:
    """results/cpu_cifar/runs_v2 holds `python -m bench experiment=cpu_cifar attack=A defense=D` cells only,
    whichever command wrote them (the study's run A records are copied there under the same id)."""
    record = json.loads(path.read_text())
    cell = [f"attack={record['attack']}", f"defense={record['defense']}"]
    assert composed_id(["experiment=cpu_cifar", *cell]) == path.stem


def test_a_plugin_moved_to_another_module_keeps_its_ids() -> None:
    """A plug-in is hashed under its config name: moving its class (a new ``_target_``) keeps every cell
    id and cache key; one added after the table is hashed under its name, not its module path."""
    cfg, names = compose_cfg(["experiment=cpu_table1", "attack=badnets", "defense=ft"])

    def ids() -> tuple[str, str]:
        sem = semantic_config(cfg, names)
        return cell_id(names, sem), victim_key(sem, sem["attack"])

    before = ids()
    cfg.attack._target_ = "bench.attacks.patches.BadNets"
    cfg.defense._target_ = "bench.defenses.finetuning.FineTune"
    assert ids() == before
    assert (
        cell_id({**names, "attack": "blend"}, semantic_config(cfg, {**names, "attack": "blend"})) != before[0]
    )
    assert plugin_identity("attack", "a_later_attack") == "attack/a_later_attack"


def test_pretrained_weights_are_hashed_by_content(tmp_path) -> None:
    """Other weights at the same ``model.pretrained`` path are another cell; the same weights at another
    path the same cell."""
    first, second = tmp_path / "a.pth", tmp_path / "b.pth"
    first.write_bytes(b"weights one")
    second.write_bytes(b"weights one")

    def cid(path) -> str:
        return composed_id(
            ["experiment=transformer", "attack=badnets", "defense=none", f"model.pretrained={path}"]
        )

    same = cid(first)
    assert cid(second) == same
    first.write_bytes(b"weights two, fine-tuned elsewhere")
    assert cid(first) != same
    assert cid(tmp_path / "missing.pth") not in (same, cid(first))


def test_a_record_names_the_commit_its_process_started_on(monkeypatch) -> None:
    """A commit made while a victim trains for an hour is not the code that trained it: the revision is
    read once per process."""
    commits = iter(["aaa\n", "bbb\n"])  # what `git rev-parse HEAD` says at the first and second call
    monkeypatch.setattr(
        host.subprocess, "run", lambda *a, **k: SimpleNamespace(returncode=0, stdout=next(commits))
    )
    host.git_sha.cache_clear()
    try:
        assert host.git_sha() == "aaa" and host.git_sha() == "aaa"
    finally:
        host.git_sha.cache_clear()


@pytest.mark.parametrize("attack", ["badnets", "blend", "none"])
def test_the_first_cpu_cifar_recipe_recomposes_its_committed_records(attack: str) -> None:
    """``experiment=cpu_cifar_v1`` pins what the recipe change moves, so the records of results/cpu_cifar/runs
    keep their ids whatever ``cpu_cifar`` becomes."""
    cid = composed_id(["experiment=cpu_cifar_v1", f"attack={attack}", "defense=none"])
    assert (REPO / "results" / "cpu_cifar" / "runs" / f"{cid}.json").is_file()


@pytest.mark.parametrize("attack", ["badnets", "blend", "none"])
def test_the_study_commands_recompose_its_committed_records(attack: str) -> None:
    """Run A's victims, the chosen recipe's (results/cpu_cifar/victim_study.md), by their page's command."""
    cid = composed_id(["experiment=cpu_cifar_study", f"attack={attack}", "defense=none", "precision=fp32"])
    assert (REPO / "results" / "cpu_cifar" / "victim_study" / f"{cid}.json").is_file()
