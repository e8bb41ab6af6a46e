"""GTSRB (Stallkamp et al., 2012), 43 classes, resized to 32x32 as in UNIT's Fig. 5 setting.

Read with torchvision's GTSRB class (which also downloads); images vary in size, so they are
decoded and resized once at load time, never in the training loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.core.images import ImageSet
from bench.datasets._base import ImageDataset


class GTSRB(ImageDataset):
    name = "gtsrb"
    num_classes = 43
    mean = (0.3403, 0.3121, 0.3214)
    std = (0.2724, 0.2608, 0.2669)
    size = 32

    def _present(self, root: Path) -> bool:
        base = root / "gtsrb"
        return (base / "GTSRB" / "Training").is_dir() and (base / "GT-final_test.csv").is_file()

    def _download(self, root: Path) -> None:
        from torchvision.datasets import GTSRB as TVGTSRB

        for split in ("train", "test"):
            TVGTSRB(str(root), split=split, download=True)

    def _load(self, root: Path) -> tuple[ImageSet, ImageSet]:
        from torchvision.datasets import GTSRB as TVGTSRB

        out = []
        for split in ("train", "test"):
            ds = TVGTSRB(str(root), split=split, download=False)
            xs, ys = [], []
            for image, label in ds:
                image = image.convert("RGB").resize((self.size, self.size))
                xs.append(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))
                ys.append(label)
            out.append(ImageSet(torch.from_numpy(np.stack(xs)), torch.tensor(ys)))
        return out[0], out[1]
