"""The model cache: trained models (and anything else costly) stored under a hash of what made them.

A backdoored model depends only on (dataset, model, attack, training recipe, seed), so the eight
defenses of a Table 1 row share one training. Entries are written atomically with a SHA-256 sidecar;
a file lock makes parallel jobs (SLURM arrays) train an entry once; a corrupt or truncated entry is
detected by its checksum, reported, and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from bench.core.files import atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)

# Bump when code changes alter what a cached entry would contain.
CACHE_VERSION = 1


def cache_key(parts: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of ``parts`` (plus the cache version)."""
    blob = json.dumps({"cache_version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ModelCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def _checksum_path(self, key: str) -> Path:
        return self.root / f"{key}.sha256"

    def _meta_path(self, key: str) -> Path:
        return self.root / f"{key}.meta.json"

    def meta(self, key: str) -> dict[str, Any] | None:
        """The entry's ``meta`` (what its training reported) without loading its weights: from a JSON
        sidecar written beside the entry (made on first use for entries older than sidecars); None when
        the entry is absent."""
        sidecar = self._meta_path(key)
        if sidecar.exists():
            return json.loads(sidecar.read_text())
        payload = self.load(key)
        if payload is None:
            return None
        self._write_meta(key, payload)
        return payload.get("meta", {})

    def _write_meta(self, key: str, payload: dict[str, Any]) -> None:
        text = json.dumps(payload.get("meta", {}), indent=2, default=str) + "\n"
        atomic_write_bytes(self._meta_path(key), lambda tmp: tmp.write_text(text))

    def load(self, key: str) -> dict[str, Any] | None:
        """The entry for ``key``, or None when absent or corrupt (a corrupt entry is removed)."""
        path = self.path(key)
        if not path.exists():
            return None
        checksum = self._checksum_path(key)
        expected = checksum.read_text().strip() if checksum.exists() else None
        if expected != sha256_file(path):
            log.warning("cached model %s fails its checksum (corrupt or truncated); retraining", path)
            self.discard(key)
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    def save(self, key: str, payload: dict[str, Any]) -> None:
        # The file is hashed before it is renamed into place and the checksum is renamed just before it:
        # a process killed between the two (a session's end, a SLURM limit) leaves a mismatched pair, which
        # load() discards, so that window is two renames long, not a hash of the file (a discarded
        # checkpoint is hours of a DFST style or a victim).
        def write(tmp: Path) -> None:
            torch.save(payload, tmp)
            digest = sha256_file(tmp)
            atomic_write_bytes(self._checksum_path(key), lambda t: t.write_text(digest + "\n"))

        atomic_write_bytes(self.path(key), write)
        self._write_meta(key, payload)

    def discard(self, key: str) -> None:
        for path in (self.path(key), self._checksum_path(key), self._meta_path(key)):
            path.unlink(missing_ok=True)

    def get_or_create(self, key: str, build: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """(payload, cache_hit). Holds the entry's lock while building so it is built once."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f"{key}.lock")):
            payload = self.load(key)
            if payload is not None:
                return payload, True
            payload = build()
            self.save(key, payload)
            return payload, False

    def get_or_create_resumable(
        self, key: str, build: Callable[[Checkpoint], dict[str, Any]]
    ) -> tuple[dict[str, Any], bool]:
        """``get_or_create`` for a long training: ``build`` gets the Checkpoint kept beside the entry (it
        resumes from there when an earlier process saved one), which is removed once the entry exists."""
        checkpoint = Checkpoint(self, key)
        payload, hit = self.get_or_create(key, lambda: build(checkpoint))
        checkpoint.discard()
        return payload, hit


class Checkpoint:
    """The resumable state of one long training beside the entry it will become, so a run killed part-way
    (a session's end, a SLURM time limit) goes on from its last save instead of from scratch. Saved at most
    every ``every_s`` seconds; ``seconds`` is the training time of every earlier process plus this one's,
    what the finished entry reports as its training time. Stored in the cache under a key of its own,
    checksummed like an entry; removed once the entry is written."""

    def __init__(self, cache: ModelCache, entry_key: str, every_s: float = 600.0) -> None:
        self.cache, self.key, self.every_s = cache, cache_key({"checkpoint_of": entry_key}), every_s
        self.earlier_s = 0.0
        self.started = self.last_save = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.earlier_s + time.perf_counter() - self.started

    def load(self) -> dict[str, Any] | None:
        """The state of the last save, or None when the training has not saved yet; where a training
        starts (its clock starts here)."""
        self.started = self.last_save = time.perf_counter()
        payload = self.cache.load(self.key)
        if payload is None:
            return None
        self.earlier_s = float(payload["seconds"])
        log.info("resuming a training from its checkpoint %s", self.cache.path(self.key))
        return payload["state"]

    def due(self) -> bool:
        return time.perf_counter() - self.last_save >= self.every_s

    def save(self, state: dict[str, Any]) -> None:
        self.cache.save(self.key, {"state": state, "seconds": self.seconds})
        self.last_save = time.perf_counter()

    def discard(self) -> None:
        self.cache.discard(self.key)
