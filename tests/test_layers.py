"""The house as the imports draw it (docs/layout.md): the ground package ``bench.core`` imports no
other part of the project; each plug-in family (attacks, defenses, datasets, models) imports only the
ground and itself, so attacks and defenses never import each other; the runner (``bench.run``) may import
everything but the reporting; the reporting (``bench.report``) reads records and nothing else of the
runner: only the record store (records, their ids, the model cache), which stands on the ground's file
primitives (``bench.core.files``: the atomic write and the checksum it shares with the trigger files)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

FAMILIES = ("attacks", "defenses", "datasets", "models")
STORE = ("bench.run.records", "bench.run.identity", "bench.run.cache")
CONFIG = ("bench.catalogue", "bench.config")


def project_imports(path: Path) -> set[str]:
    """The ``bench.*`` modules a file imports (absolute imports; the project uses no relative ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n == "bench" or n.startswith("bench.")}
    return found


def layer(module: str) -> str:
    """``core``, a family name, ``config``, ``store``, ``run`` or ``report`` for a ``bench.*`` module."""
    parts = module.split(".")
    if module in STORE:
        return "store"
    if module in CONFIG:
        return "config"
    if len(parts) > 1 and parts[1] in ("core", "run", "report", *FAMILIES):
        return parts[1]
    return "entry"  # bench itself, bench.__main__


ALLOWED = {
    "core": {"core"},
    **{f: {"core", f} for f in FAMILIES},
    "config": {"config"},
    "store": {"store", "core"},
    "run": {"core", *FAMILIES, "config", "store", "run"},
    "report": {"report", "store"},
}


def package_files(package: str) -> list[Path]:
    """The modules of one layer: a package of ``bench``, or the listed modules of the store and config."""
    if package in ("store", "config"):
        return [
            REPO / (module.replace(".", "/") + ".py") for module in (STORE if package == "store" else CONFIG)
        ]
    return sorted((REPO / "bench" / package).glob("*.py"))


@pytest.mark.parametrize("package", list(ALLOWED))
def test_layer_imports_only_what_it_stands_on(package: str) -> None:
    files = package_files(package)
    assert files
    wrong = {
        f"{path.relative_to(REPO)} imports {module}"
        for path in files
        for module in project_imports(path)
        if layer(module) not in ALLOWED[package]
    }
    assert not wrong, sorted(wrong)


def test_no_top_level_package_shadows_a_well_known_library() -> None:
    """Everything importable lives under ``bench`` (no top-level ``datasets`` or ``models``)."""
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests"}
    assert packages == {"bench"}
