"""Sanity flags of a cell: results that are numbers but not findings (a model at chance, a backdoor that
never took, a defense that did nothing, a detector that flags everything). The record carries them
(``warnings``), the console line shows them, and the aggregator marks the cells instead of ranking them
silently."""

from __future__ import annotations

NEAR_CHANCE = 5.0  # points above chance (100 / classes) still counted as chance
FLAGS_ALL = 90.0  # a detector flagging this share of clean test images flags everything
NO_BACKDOOR = "the backdoor did not take"  # the tables leave such a victim's row out of their averages
AT_CHANCE = "is at chance"  # a record's warning that its victim or repaired model is at chance
# A repaired model more than this many points of ACC below its victim is collapsed: its low ASR is the
# model's failure, not a removal (NAD's CIFAR-10 cells at 24-32% ACC). The tables never bold it.
COLLAPSE_DROP = 10.0


def sanity_warnings(
    num_classes: int,
    defense: str,
    before: dict[str, float | None],
    after: dict[str, float | None],
    detection: dict[str, float],
) -> list[str]:
    """What is suspicious about a cell's metrics (percentages), in words; empty when nothing is."""
    chance = 100.0 / num_classes
    out = []
    if before["acc"] is not None and before["acc"] < chance + NEAR_CHANCE:
        out.append(f"victim ACC {before['acc']:.1f}% {AT_CHANCE} ({chance:.0f}%)")
    if defense != "none" and after["acc"] is not None and after["acc"] < chance + NEAR_CHANCE:
        out.append(f"repaired ACC {after['acc']:.1f}% {AT_CHANCE} ({chance:.0f}%)")
    if before["asr"] is not None and before["asr"] < chance + NEAR_CHANCE:
        out.append(f"ASR {before['asr']:.1f}% before any defense: {NO_BACKDOOR}")
    same = all(before[k] == after[k] for k in ("acc", "asr", "ra"))
    if defense != "none" and same and not detection:
        out.append("the defense changed no prediction")
    if detection.get("fpr", 0.0) >= FLAGS_ALL:
        out.append(f"the detector flags {detection['fpr']:.0f}% of clean test images")
    return out
