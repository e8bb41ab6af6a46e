"""What a run ran on: device choice, seeding, processor, threads and the code's git revision."""

from __future__ import annotations

import functools
import platform
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.engine import cpu_has_bf16


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_name() -> str:
    """The processor's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compute_info() -> dict[str, Any]:
    """What a result depends on beyond the config: the processor and thread count choose the kernels and
    the order of float sums, so CPU runs reproduce bit for bit only when both match. ``isa``, the vector
    instructions PyTorch's kernels use, and ``cpu_bf16``, whether the CPU computes bf16 itself, tell two
    processors of one name apart (an AVX2 and an AVX-512 BF16 "AMD EPYC" train bf16 12.8x apart)."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu_name(), "isa": torch.backends.cpu.get_cpu_capability(), "cpu_bf16": cpu_has_bf16(),
            "threads": torch.get_num_threads(), "gpu": gpu}  # fmt: skip


@functools.cache
def git_sha() -> str:
    """The commit of the code this process runs: read once, at a run's start (the entry's
    ``write_environment``, or ``run_cell`` for a caller that skips the entry), so a record written after a
    long training names the code that trained it, not a commit made meanwhile."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)  # fmt: skip
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
