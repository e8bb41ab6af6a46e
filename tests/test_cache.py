"""The model cache: built once, checksummed, corrupt entries rebuilt with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import OmegaConf

from bench.run.cache import ModelCache, cache_key
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
