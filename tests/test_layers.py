"""The house as the imports draw it (docs/layout.md): the ground package ``bench.core`` imports no
other part of the project; each plug-in family (attacks, defenses, datasets, models) imports only the
ground and itself, so attacks and defenses never import each other; the runner above may import all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

FAMILIES = ("attacks", "defenses", "datasets", "models")


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
    """``core``, a family name, or ``runner`` for a ``bench.*`` module."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("core", *FAMILIES):
        return parts[1]
    return "runner"


ALLOWED = {"core": {"core"}, **{f: {"core", f} for f in FAMILIES}}


@pytest.mark.parametrize("package", ["core", *FAMILIES])
def test_layer_imports_only_what_it_stands_on(package: str) -> None:
    files = sorted((REPO / "bench" / package).glob("*.py"))
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
