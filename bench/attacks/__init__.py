"""Backdoor attacks. One module per attack (``conf/attack/<name>.yaml`` points at its class);
modules starting with an underscore hold shared machinery."""

from bench.attacks._base import (
    Attack,
    AttackContext,
    Checkpoint,
    PoisoningAttack,
    ResumableTrain,
    TrainNetwork,
)

__all__ = ["Attack", "AttackContext", "Checkpoint", "PoisoningAttack", "ResumableTrain", "TrainNetwork"]
