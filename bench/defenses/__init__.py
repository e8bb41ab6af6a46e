"""Backdoor defenses. One module per defense (``conf/defense/<name>.yaml`` points at its class);
modules starting with an underscore hold shared machinery."""

from bench.defenses._base import DefenderContext, Defense, Detector

__all__ = ["DefenderContext", "Defense", "Detector"]
