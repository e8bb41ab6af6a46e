"""The catalogue ``python -m bench --help`` prints: every option of the groups a user picks from, with the
first sentence of its YAML's leading comment (the description lives once, in the file that defines it)."""

from __future__ import annotations

import textwrap
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"  # the config tree (bench.run.entry composes it)
LISTED_GROUPS = ("attack", "defense", "model", "dataset", "experiment", "pair")


def options(group: str) -> list[str]:
    """The options of a config group: its YAML files' names."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def leading_comment(path: Path) -> str:
    """The YAML file's leading comment block as one line (without Hydra's ``@package`` header)."""
    comment = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text and not text.startswith("@package"):
            comment.append(text)
    return " ".join(comment)


def description(path: Path) -> str:
    """The first sentence of the file's leading comment block, else its ``_target_``."""
    if comment := leading_comment(path):
        return first_sentence(comment)
    targets = [line.split(":", 1)[1].strip() for line in path.read_text().splitlines()
               if line.startswith("_target_:")]  # fmt: skip
    return targets[0] if targets else ""


ABBREVIATIONS = ("al", "Fig", "e.g", "i.e", "cf", "vs")


def first_sentence(text: str) -> str:
    """Up to the first full stop that ends a sentence (not "et al." or "Fig.")."""
    start = 0
    while (end := text.find(". ", start)) >= 0:
        if not text[:end].endswith(ABBREVIATIONS):
            return text[: end + 1]
        start = end + 2
    return text


def catalogue(width: int = 110) -> str:
    """Every option of the listed groups with its description, wrapped (never cut) to ``width``."""
    out = []
    for group in LISTED_GROUPS:
        out.append(f"{group}=")
        for name in options(group):
            text = f"  {name:<22} {description(CONF_DIR / group / f'{name}.yaml')}"
            out += textwrap.wrap(text, width, subsequent_indent=" " * 25) or [text]
    return "\n".join(out)
