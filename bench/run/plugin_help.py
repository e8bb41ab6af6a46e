"""``python -m bench attack=ia --help``: the settings of the chosen plug-ins (every key, its value in the
chosen setting, what it may be), read from the same places validation reads them: the composed YAML and
the constructor's annotated signature. Without a plug-in on the command line, Hydra's help (the catalogue)
is shown instead."""

from __future__ import annotations

import json
import sys
import textwrap

from omegaconf import DictConfig, OmegaConf

from bench.catalogue import CONF_DIR, leading_comment, options
from bench.config import compose_config
from bench.run.validation import allowed, signature_of

HELP_GROUPS = ("dataset", "model", "attack", "defense")
HELP_FLAGS = ("--help", "-h")


def rows(node: DictConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, value, allowed) for every setting of a ``_target_`` node and of its nested target nodes; a
    value written through a budget resolver shows the expression beside its value."""
    _, hints = signature_of(node["_target_"])
    out = []
    for key in node:
        if key == "_target_":
            continue
        name, raw = f"{prefix}{key}", OmegaConf.to_container(node, resolve=False)[key]
        value = node[key]
        if isinstance(value, DictConfig) and "_target_" in value:
            out += rows(value, f"{name}.")
            continue
        shown = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        text = json.dumps(shown) + (f"  ({raw})" if isinstance(raw, str) and raw.startswith("${") else "")
        out.append((name, text, allowed(hints[key]) if str(key) in hints else "any"))
    return out


def plugin_help(overrides: list[str]) -> str:
    """The help text for the plug-ins chosen in ``overrides`` (group=option), in the composed setting."""

    cfg = compose_config([o for o in overrides if "=" in o and not o.startswith("-")])
    chosen = [o.split("=", 1) for o in overrides if o.split("=", 1)[0] in HELP_GROUPS]
    parts = []
    for group, option in chosen:
        table = rows(cfg[group])
        width = max((len(k) for k, _, _ in table), default=0)
        values = max((len(v) for _, v, _ in table), default=0)
        body = "\n".join(f"  {k:<{width}}  {v:<{values}}  {a}" for k, v, a in table)
        about = leading_comment(CONF_DIR / group / f"{option}.yaml")
        about = textwrap.fill(about, 108, initial_indent="  ", subsequent_indent="  ")
        parts.append(f"{group}={option} ({cfg[group]['_target_']})\n{about}\n\n{body}")
    parts.append(
        "Override any of them as group.key=value (defense.eps=0.03); python -m bench --help lists options."
    )
    return "\n\n".join(parts)


def show_plugin_help(argv: list[str] | None = None) -> None:
    """Print the chosen plug-ins' settings and exit 0 when ``--help`` comes with a group=option."""
    argv = sys.argv[1:] if argv is None else argv
    if not any(a in HELP_FLAGS for a in argv):
        return
    if any(
        group in HELP_GROUPS and value in options(group)
        for group, _, value in (a.partition("=") for a in argv)
    ):
        print(plugin_help([a for a in argv if a not in HELP_FLAGS]))
        sys.exit(0)
