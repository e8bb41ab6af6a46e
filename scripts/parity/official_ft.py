"""FT as BackdoorBench runs it (SCLBD/BackdoorBench: ``defense/ft.py``, the UNIT paper's FT baseline) on our
victim, I/O redirected as ``backdoorbench.py`` says.

Its recipe is its own (``config/defense/ft/cifar10.yaml``: SGD momentum 0.9, wd 5e-4, lr 0.01, cosine,
batch 256, crop/flip) at our budget's length; the script also tests both test sets after every epoch, which
is in ``ref_s``.
"""

from __future__ import annotations

from backdoorbench import official_config, runner

NAME = "ft"
SETTINGS = {"default": []}
run_official = runner("ft")
__all__ = ["NAME", "SETTINGS", "official_config", "run_official"]
