"""Backdoor defenses. One module per defense (``conf/defense/<name>.yaml`` points at its class);
modules starting with an underscore hold shared machinery."""

from defenses._base import DefenderContext, Defense

__all__ = ["DefenderContext", "Defense"]
