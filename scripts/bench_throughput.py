"""Training throughput of the engine vs. raw compute vs. a per-sample torchvision DataLoader loop.

Prints one JSON object. All three train the same model (CPU setting: width-16 CIFAR-style ResNet-18)
on the same Fashion-MNIST images with the same batch size, crop/flip augmentation and SGD step:
- engine: bench.core.engine.fit (uint8 tensors in memory, batched augmentation);
- raw: forward + backward + optimiser step on one pre-made float batch (no data handling at all);
- dataloader: torchvision Dataset of PIL images with per-sample RandomCrop/RandomHorizontalFlip/ToTensor
  and a DataLoader (the usual research-code loop, BackdoorBench-style).
Usage: python scripts/bench_throughput.py [--steps 40] [--batch-size 128] [--width 0.25] [--workers 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from bench.core.engine import Recipe, fit, prepare_model
from bench.datasets.fashion_mnist import FashionMNIST
from bench.models import Normalized
from bench.models.resnet import resnet18


def make_model(width: float, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.nn.Module:
    torch.manual_seed(0)
    return Normalized(resnet18(10, width), mean, std)


class PILImages(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: transforms.Compose) -> None:
        self.images = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in x]
        self.y, self.transform = y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[i]), self.y[i]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--workers", type=int, default=0)
    args = p.parse_args()
    device = torch.device("cpu")
    bundle = FashionMNIST(train_size=args.steps * args.batch_size).load()
    train = bundle.train
    n = args.steps * args.batch_size
    recipe = Recipe(epochs=1, batch_size=args.batch_size, lr=0.05)

    # Warm-up (allocator, kernels) so no method pays first-call costs.
    fit(make_model(args.width, bundle.mean, bundle.std), train.subset(torch.arange(4 * args.batch_size)),
        recipe, device, progress=False)  # fmt: skip

    engine = fit(make_model(args.width, bundle.mean, bundle.std), train, recipe, device, progress=False)

    model = prepare_model(make_model(args.width, bundle.mean, bundle.std), device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    xb = (train.x[: args.batch_size].float() / 255).contiguous(memory_format=torch.channels_last)
    yb = train.y[: args.batch_size]
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    raw_s = time.perf_counter() - start

    tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor()])  # fmt: skip
    loader = DataLoader(PILImages(train.x, train.y, tf), batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers)  # fmt: skip
    model = prepare_model(make_model(args.width, bundle.mean, bundle.std), device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    start = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loader_s = time.perf_counter() - start

    raw = n / raw_s
    print(json.dumps({
        "engine_images_per_s": round(engine["images_per_s"], 1),
        "raw_images_per_s": round(raw, 1),
        "dataloader_images_per_s": round(n / loader_s, 1),
        "engine_over_raw": round(engine["images_per_s"] / raw, 3),
        "images": n, "batch_size": args.batch_size, "width": args.width, "dataloader_workers": args.workers,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
