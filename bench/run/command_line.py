"""The command line's overrides checked before Hydra runs: an unknown option of a group or a misspelt key
is one ``error:`` line with the close matches and exit status 2, as every other configuration mistake,
instead of Hydra's multi-line report and status 1."""

from __future__ import annotations

import difflib
import re
import sys

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from bench.catalogue import CONF_DIR, options
from bench.config import compose_config

HELP_FLAGS = ("--help", "-h", "--hydra-help", "--info", "--shell-completion", "-sc")
SWEEP_FUNCTION = re.compile(r"^\w+\(")  # glob(*), range(1,3), choice(...): Hydra expands them


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def group_error(key: str, value: str) -> str | None:
    """The error for an option that is not a file of its group (each value of a sweep list)."""
    group = key.lstrip("+~")
    if not (CONF_DIR / group).is_dir() or SWEEP_FUNCTION.match(value) or value in ("null", ""):
        return None
    choices = options(group)
    for name in value.split(","):
        if name not in choices:
            return (
                f"{group}={name}: no such option{did_you_mean(name, choices)}; options: {', '.join(choices)}"
            )
    return None


def first_choice(override: str) -> str | None:
    """A sweep override reduced to its first value (the keys are the same for every value); None for a
    sweep function (glob(*), range(...)), which only Hydra's sweeper expands."""
    key, _, value = override.partition("=")
    if SWEEP_FUNCTION.match(value):
        return None
    if "[" in value or "{" in value:
        return override
    return f"{key}={value.split(',')[0]}"


def key_error(overrides: list[str], message: str) -> str:
    """One line for Hydra's composition error: the misspelt key and the keys beside it that are close."""
    found = re.search(r"Could not override '([^']+)'", message) or re.search(
        r"Key '([^']+)' is not in struct", message
    )
    if not found:
        return message.strip().splitlines()[0]
    dotted = found.group(1)
    parent, _, leaf = dotted.rpartition(".")

    kept = [o for o in overrides if not o.lstrip("+~").startswith(f"{dotted}=")]
    try:
        node = compose_config(kept)
        siblings = OmegaConf.select(node, parent) if parent else node
    except HydraException:
        siblings = None
    keys = list(siblings.keys()) if isinstance(siblings, DictConfig) else []
    return (
        f"{dotted} is not a setting{did_you_mean(leaf, [str(k) for k in keys])}; +{dotted}=... adds a new key"
    )


def check(argv: list[str]) -> str | None:
    """The first configuration mistake on the command line, as one line; None when it composes."""
    if any(a in HELP_FLAGS for a in argv):
        return None
    # Hydra's own settings and groups (hydra.*, hydra/launcher=...) are Hydra's to check: its plugins add
    # options (submitit_slurm) that are not files of conf/
    overrides = [
        a for a in argv if "=" in a and not a.startswith("-") and not a.lstrip("+~").startswith("hydra")
    ]
    for override in overrides:
        key, _, value = override.partition("=")
        if (error := group_error(key, value)) is not None:
            return error

    first = [f for o in overrides if (f := first_choice(o)) is not None]
    try:
        compose_config(first)
    except HydraException as exc:
        return key_error(first, str(exc))
    return None


def refuse_mistakes(argv: list[str] | None = None) -> None:
    """Exit 2 with one ``error:`` line if the command line does not compose."""
    error = check(sys.argv[1:] if argv is None else argv)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
