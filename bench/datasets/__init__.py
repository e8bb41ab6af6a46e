"""Image datasets loaded into memory as uint8 tensors (N, C, H, W), with seeded class-balanced splits.

Each submodule defines one dataset class, built from ``conf/dataset/<name>.yaml`` by Hydra.
"""

from bench.datasets._base import ImageDataset

__all__ = ["ImageDataset"]
