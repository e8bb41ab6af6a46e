"""The model cache: built once, checksummed, corrupt entries rebuilt with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

import bench.core.files as files
from bench.run.cache import Checkpoint, ModelCache, cache_key
from bench.run.cell import Cell
from bench.run.victims import CachedAuxiliaryModels
from tests.conftest import bundle


def test_key_depends_on_content_not_order() -> None:
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})


def test_built_once(tmp_path: Path) -> None:
    cache, calls = ModelCache(tmp_path), []

    def build() -> dict:
        calls.append(1)
        return {"w": torch.ones(3)}

    first, hit1 = cache.get_or_create("k", build)
    second, hit2 = cache.get_or_create("k", build)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    assert torch.equal(second["w"], torch.ones(3))


def test_save_renames_the_checksum_then_the_file_with_nothing_between(tmp_path: Path, monkeypatch) -> None:
    """A save killed between its two renames is the only way to a mismatched pair (which load discards):
    the file is hashed before either rename, so nothing slow stands between them."""
    cache, events = ModelCache(tmp_path), []
    real_replace, real_hash = files.os.replace, files.sha256_file
    monkeypatch.setattr(files.os, "replace", lambda a, b: (events.append(Path(b).name), real_replace(a, b)))
    monkeypatch.setattr("bench.run.cache.sha256_file", lambda f: (events.append("hash"), real_hash(f))[1])
    cache.save("k", {"w": torch.arange(10.0)})
    assert events[:3] == ["hash", "k.sha256", "k.pt"]
    assert cache.load("k") is not None


def test_truncated_entry_is_rebuilt_with_warning(tmp_path: Path, caplog) -> None:
    cache = ModelCache(tmp_path)
    cache.get_or_create("k", lambda: {"w": torch.ones(1000)})
    path = cache.path("k")
    path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        payload, hit = cache.get_or_create("k", lambda: {"w": torch.zeros(2)})
    assert not hit and torch.equal(payload["w"], torch.zeros(2))
    assert "fails its checksum" in caplog.text


def test_meta_is_read_without_loading_the_entry(tmp_path: Path, monkeypatch) -> None:
    cache = ModelCache(tmp_path)
    cache.save("k", {"model": {"w": torch.zeros(3)}, "meta": {"acc": 91.5}})
    monkeypatch.setattr(torch, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    assert cache.meta("k") == {"acc": 91.5}
    assert cache.meta("absent") is None


def test_meta_sidecar_is_made_once_for_an_entry_older_than_sidecars(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path)
    cache.save("k", {"model": {}, "meta": {"acc": 88.0}})
    (tmp_path / "k.meta.json").unlink()  # as entries written before sidecars existed
    assert cache.meta("k") == {"acc": 88.0} and (tmp_path / "k.meta.json").exists()


def test_an_auxiliary_networks_facts_are_reported_from_the_cache_too(tmp_path: Path) -> None:
    """What a network's training reports (LIRA's stage-1 ASR) must reach the record on a cache hit as well:
    the training that measured it may have run in another process."""
    cfg = OmegaConf.create({"cache_dir": str(tmp_path)})
    ctx = Cell({}, cfg, {"seed": 0}, "cell", "victim", torch.device("cpu"), "auto")
    trained = []

    def train(net: nn.Module, data) -> dict[str, float]:
        trained.append(len(data))
        with torch.no_grad():
            net.weight.fill_(0.5)
        return {"stage1_asr": 97.5}

    runs = [CachedAuxiliaryModels(ctx, bundle(20)) for _ in range(2)]  # two cells, one cache
    nets = [models.network("trigger", {"eps": 0.01}, nn.Linear(2, 2), train) for models in runs]
    assert trained == [20] and torch.equal(nets[1].weight, torch.full((2, 2), 0.5))  # the second is a hit
    assert [models.facts for models in runs] == [{"trigger": {"stage1_asr": 97.5}}] * 2
    assert runs[1].train_s["trigger"] == runs[0].train_s["trigger"]


def test_a_checkpoint_keeps_its_state_and_the_seconds_of_every_process(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path)
    first = Checkpoint(cache, "entry", every_s=0.0)
    assert first.load() is None and first.due()
    first.earlier_s = 30.0  # as if an earlier process had trained 30 s before this one
    first.save({"epochs": 3, "w": torch.ones(2)})
    second = Checkpoint(cache, "entry")
    state = second.load()
    assert state is not None and state["epochs"] == 3 and torch.equal(state["w"], torch.ones(2))
    assert 30.0 <= second.seconds < 60.0 and not second.due()  # every_s 600: not due just after loading
    second.discard()
    assert Checkpoint(cache, "entry").load() is None and not cache.path("entry").exists()


def cell(tmp_path: Path, **sem: object) -> Cell:
    cfg = OmegaConf.create({"cache_dir": str(tmp_path)})
    return Cell({}, cfg, {"seed": 0, "dataset": "toy", **sem}, "cell", "victim", torch.device("cpu"), "auto")


def test_a_data_only_network_is_shared_by_every_architecture_and_recipe(tmp_path: Path) -> None:
    trained: list[str] = []

    def train(net: nn.Module, data) -> None:
        trained.append("x")

    def ask(model: str, data_only: bool) -> None:
        models = CachedAuxiliaryModels(cell(tmp_path, model=model, train={"epochs": 1}), bundle(10))
        models.network("style", {}, nn.Linear(2, 2), train, data_only=data_only)

    ask("resnet18", data_only=True)
    ask("vgg11", data_only=True)
    assert len(trained) == 1  # the second architecture is a hit
    ask("resnet18", data_only=False)
    ask("vgg11", data_only=False)
    assert len(trained) == 3  # a classifier-dependent network is trained per architecture


def test_a_resumable_network_goes_on_from_its_checkpoint_after_a_kill(tmp_path: Path) -> None:
    """A training killed after a save restarts from that save in the next process and leaves no
    checkpoint behind once its entry exists."""
    starts: list[int] = []

    def train(net: nn.Module, data, checkpoint) -> dict[str, int]:
        state, first = checkpoint.load(), 0
        if state is not None:
            net.load_state_dict(state["net"])
            first = state["epochs"]
        starts.append(first)
        for epoch in range(first, 4):
            with torch.no_grad():
                net.weight.add_(1.0)
            checkpoint.save({"epochs": epoch + 1, "net": net.state_dict()})
            if epoch == 1 and len(starts) == 1:
                raise KeyboardInterrupt  # the session ends after the second epoch's save
        return {"epochs": 4}

    def run() -> tuple[CachedAuxiliaryModels, nn.Module]:
        net = nn.Linear(2, 2)  # each process builds the network afresh
        with torch.no_grad():
            net.weight.zero_()
        models = CachedAuxiliaryModels(cell(tmp_path), bundle(10))
        return models, models.network("gan", {}, net, train, resumable=True)

    with pytest.raises(KeyboardInterrupt):
        run()
    models, net = run()
    assert starts == [0, 2] and torch.equal(net.weight, torch.full((2, 2), 4.0))
    assert models.facts == {"gan": {"epochs": 4}}
    assert len(list(tmp_path.glob("*.pt"))) == 1  # the entry; its checkpoint is gone
