"""The attack contract shared by every attack.

An attack is an ``nn.Module`` so that everything random about its trigger (patterns, noise grids,
generator weights) lives in buffers/parameters, is saved in the model cache beside the victim and
makes the test-time trigger exactly the training-time one.

Life cycle, driven by ``bench.pipeline``:
1. ``setup(data)``: check the attack fits the dataset, build the seeded trigger;
2. ``poison(train)``: the training set the victim is trained on (data-poisoning attacks);
3. ``batch_hook(x, y)``: called on every float training batch (in-batch attacks override it);
4. ``apply(x)``: the trigger on float images in [0, 1] (before normalisation), used at test time.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from bench.errors import ConfigError, check_fraction
from datasets import DataBundle, ImageSet


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8, as a poisoned image saved to disk would be."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255)


class Attack(nn.Module):
    """Base class. Subclasses implement ``apply`` and may override the other hooks."""

    has_trigger = True

    def __init__(self, target: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.target = target
        self.seed = seed

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from the cell seed, so triggers are reproducible."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)

    def setup(self, data: DataBundle) -> None:
        if not 0 <= self.target < data.num_classes:
            raise ConfigError(
                f"attack.target must be in [0, {data.num_classes - 1}] for {data.name}, got {self.target}"
            )
        self.build(data.train.x.shape[1:])

    def build(self, image_shape: torch.Size) -> None:
        """Create the trigger for images of shape (C, H, W). Default: nothing to build."""

    def poison(self, train: ImageSet) -> ImageSet:
        return train

    def batch_hook(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement apply(x)")

    @torch.no_grad()
    def apply_uint8(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """The trigger on stored uint8 images, returned as uint8 (what a poisoned file holds)."""
        device = next(self.buffers(), torch.empty(0)).device
        out = [quantize(self.apply(to_float(x[i : i + batch_size].to(device)))).cpu()
               for i in range(0, len(x), batch_size)]  # fmt: skip
        return torch.cat(out) if out else x.clone()


class PoisoningAttack(Attack):
    """Static data poisoning: a seeded fraction of the training set gets the trigger.

    Dirty-label (``clean_label=False``): ``poison_rate`` is the fraction of the whole training set,
    drawn from non-target images, relabelled to the target. Clean-label: only target-class images are
    triggered and no label changes; ``poison_rate`` is then the fraction of the whole training set
    (capped by the size of the target class).
    """

    clean_label = False

    def __init__(self, target: int = 0, poison_rate: float = 0.1, seed: int = 0) -> None:
        super().__init__(target, seed)
        self.poison_rate = check_fraction("attack.poison_rate", poison_rate)

    def poison_index(self, y: torch.Tensor) -> torch.Tensor:
        pool = torch.nonzero((y == self.target) if self.clean_label else (y != self.target)).flatten()
        k = round(self.poison_rate * len(y))
        if k > len(pool):
            kind = "target-class" if self.clean_label else "non-target"
            raise ConfigError(
                f"attack.poison_rate={self.poison_rate} asks for {k} poisoned images but only "
                f"{len(pool)} {kind} training images exist"
            )
        return pool[torch.randperm(len(pool), generator=self.generator(1))[:k]]

    def poison(self, train: ImageSet) -> ImageSet:
        index = self.poison_index(train.y)
        x, y = train.x.clone(), train.y.clone()
        x[index] = self.apply_uint8(train.x[index])
        if not self.clean_label:
            y[index] = self.target
        return ImageSet(x, y)
