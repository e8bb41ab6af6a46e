"""Fine-Pruning as BackdoorBench runs it (SCLBD/BackdoorBench: ``defense/fp.py``, the UNIT paper's FP
baseline) on our victim, I/O redirected as ``backdoorbench.py`` says.

Its rule is its own and differs from ours by design: it prunes the classifier's input channels in steps of
1% by mean activation on the defender data and keeps the last count whose *test-set* accuracy is within
10% (relative) of the unpruned model's (``acc_ratio``); ours chooses on the defender's validation split,
never test data. Then both fine-tune with BackdoorBench's recipe at our budget's length; the script tests
both test sets at every pruning step and after every epoch, which is in ``ref_s``.
"""

from __future__ import annotations

from backdoorbench import official_config, runner

NAME = "fp"
SETTINGS = {"default": []}
run_official = runner("fp")
__all__ = ["NAME", "SETTINGS", "official_config", "run_official"]
