"""Run a defense's official code unchanged beside ours, on the same cached victim and defender images.

The official code is a checkout the user passes by path (never copied into this repository). An adapter
(``official_<defense>.py``) imports it and redirects only its I/O: where it loads a model (our victim),
its data (our defender images and test set), its normalisation (the victim's) and its device (the CPU).
Our side runs the same defense from ``conf/defense`` in the official code's configuration. Both repaired
models are scored on the same test images in float32; one CSV row per (defense, attack, seed, setting).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import re
import runpy
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from hydra.utils import instantiate
from omegaconf import DictConfig

from bench.core.engine import precision
from bench.core.images import ImageSet, to_float
from bench.defenses._base import DefenderContext, Defense, split_train_val
from bench.run.cell import Cell
from bench.run.host import seed_everything
from bench.run.metrics import evaluate
from bench.run.victims import load_or_train_victim

COLUMNS = (
    "defense", "attack", "seed", "ours_acc", "ours_asr", "ref_acc", "ref_asr", "ours_s", "ref_s",
    "ref_commit", "setting", "victim_acc", "victim_asr", "ref_victim_acc", "ref_victim_asr",
    "d_acc", "d_asr", "threads", "cpu", "defense_seed",
)  # fmt: skip


@dataclass
class ParityVictim:
    """What both sides see: the victim (a fresh copy per side), its normalisation, the defender's data
    split as our defenses split it, the clean test set and its triggered non-target images."""

    model: nn.Module  # Normalized(net): takes images in [0, 1]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    defender: DefenderContext
    defender_train: ImageSet  # our split_train_val of the defender data (UNIT's 4:1, per class)
    defender_val: ImageSet
    test: ImageSet
    triggered: Any  # bench.run.metrics.TriggeredTestSet
    target: int
    acc: float  # the victim's ACC and ASR (float32)
    asr: float

    def fresh_model(self) -> nn.Module:
        return copy.deepcopy(self.model).eval()

    def fresh_net(self) -> nn.Module:
        """The network behind the normalisation (official code normalises itself)."""
        return self.fresh_model().net

    def defender_in_split_order(self) -> ImageSet:
        """The defender images ordered so that code which keeps, per class, the first 80% in dataset order
        for training and the rest for validation (the UNIT reference) splits exactly as we do."""
        return ImageSet(
            torch.cat([self.defender_train.x, self.defender_val.x]),
            torch.cat([self.defender_train.y, self.defender_val.y]),
        )


@dataclass
class OfficialResult:
    acc: float
    asr: float
    seconds: float
    victim_acc: float | None = None  # the official code's own reading of the victim, when it prints one
    victim_asr: float | None = None
    log: str = field(default="", repr=False)


def load_victim(cell: Cell, defense_seed: int | None = None, val_ratio: float = 0.2) -> ParityVictim:
    """The cell's cached victim (trained on a miss, at the cell's precision) and its data, evaluated in
    float32 (the official codes evaluate in float32). ``defense_seed`` (default: the cell's) seeds both
    defenses' own randomness and the validation split, on the same victim and defender images."""
    victim = load_or_train_victim(cell)
    evaluation = victim.evaluation()
    defender = victim.defender_context()
    if defense_seed is not None and defense_seed != cell.cfg.seed:
        defender = replace(defender, seed=defense_seed)
        seed_everything(defense_seed)  # what a defense draws from the global generators differs too
    train, val = split_train_val(defender.data, val_ratio, defender.seed)
    model = victim.model.eval()
    with precision("fp32"):
        before = evaluate(model, victim.data.test, evaluation.triggered, victim.attack.target, cell.device)
    return ParityVictim(
        model=model,
        mean=tuple(model.mean.flatten().tolist()),
        std=tuple(model.std.flatten().tolist()),
        defender=defender,
        defender_train=train,
        defender_val=val,
        test=victim.data.test,
        triggered=evaluation.triggered,
        target=victim.attack.target,
        acc=before["acc"],
        asr=before["asr"],
    )


def run_ours(defense_cfg: DictConfig, victim: ParityVictim) -> tuple[float, float, float, dict[str, Any]]:
    """Our defense (built from its config node) on a fresh copy of the victim, in float32 as the official
    codes run: ACC, ASR, seconds, info."""
    defense: Defense = instantiate(defense_cfg)
    with precision("fp32"):
        start = time.perf_counter()
        model, info = defense.repair(victim.fresh_model(), victim.defender)
        seconds = time.perf_counter() - start
        after = evaluate(model, victim.test, victim.triggered, victim.target, victim.defender.device)
    return after["acc"], after["asr"], seconds, info


class TensorImages(torch.utils.data.Dataset):
    """uint8 images as float tensors in [0, 1] with integer labels (a torchvision dataset's items)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | int) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        y = self.y if isinstance(self.y, int) else int(self.y[i])
        return to_float(self.x[i]), y


class PILImages(torch.utils.data.Dataset):
    """uint8 images as PIL images through the official code's own ``transform`` (its augmentation), or
    as they are without one (a torchvision dataset without a transform)."""

    def __init__(self, data: ImageSet, transform: Callable[[Any], Any] | None = None) -> None:
        self.data, self.transform = data, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        img = Image.fromarray(self.data.x[i].permute(1, 2, 0).numpy())
        return (img if self.transform is None else self.transform(img)), int(self.data.y[i])


# top-level names official codes use for their own packages (namespace packages have no __file__)
OFFICIAL_PACKAGES = ("data", "models", "utils", "backdoors")


@contextlib.contextmanager
def official_checkout(path: Path) -> Iterator[None]:
    """Import the official code from its checkout (its modules shadow nothing of ours), on the CPU:
    ``.cuda()`` on tensors and modules is the identity while it runs, its names are unloaded after."""
    before = set(sys.modules)
    sys.path.insert(0, str(path))
    tensor_cuda, module_cuda = torch.Tensor.cuda, nn.Module.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda, nn.Module.cuda = tensor_cuda, module_cuda  # type: ignore[method-assign]
        sys.path.remove(str(path))
        root = str(path.resolve())
        for name in set(sys.modules) - before:  # the checkout's own modules, not what they imported
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file.startswith(root) or name in OFFICIAL_PACKAGES:
                del sys.modules[name]


@contextlib.contextmanager
def loading(model: nn.Module) -> Iterator[None]:
    """``torch.load`` returns ``model`` (the official code loads its checkpoint as a whole module)."""
    original = torch.load
    torch.load = lambda *a, **k: model  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.load = original  # type: ignore[assignment]


def captured(fn: Callable[[], Any]) -> tuple[Any, str, float]:
    """``fn()``'s result, what it printed, and its wall-clock."""
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        result = fn()
    return result, out.getvalue(), time.perf_counter() - start


def run_script(script: Path, argv: list[str]) -> None:
    """Run an official script as ``__main__`` with ``argv``; ``sys.argv`` and ``sys.stdout`` (which some
    replace with a log tee) are restored after."""
    saved_argv, saved_stdout = sys.argv, sys.stdout
    sys.argv = [str(script), *argv]
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv, sys.stdout = saved_argv, saved_stdout


def printed(log: str, pattern: str, scale: float = 1.0) -> list[float]:
    """Each number the official code printed on a line matching ``pattern`` (its one group), in order,
    times ``scale`` (100 for a fraction)."""
    return [scale * float(v) for v in re.findall(pattern, log, re.M)]


def first(values: list[float]) -> float | None:
    return values[0] if values else None


def git_commit(path: Path) -> str:
    """The commit of the official checkout (a git directory or a work tree written out of one), or the
    content of a ``COMMIT`` file beside it."""
    marker = path / "COMMIT"
    if marker.is_file():
        return marker.read_text().strip()
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


@dataclass
class Row:
    defense: str
    attack: str
    seed: int
    ours_acc: float
    ours_asr: float
    ref_acc: float
    ref_asr: float
    ours_s: float
    ref_s: float
    ref_commit: str
    setting: str
    victim_acc: float
    victim_asr: float
    ref_victim_acc: float | None
    ref_victim_asr: float | None
    d_acc: float = 0.0
    d_asr: float = 0.0
    threads: int = field(default_factory=torch.get_num_threads)
    cpu: str = ""
    defense_seed: int | None = None  # the defenses' own seed on the victim of ``seed`` (default: the same)

    def __post_init__(self) -> None:
        self.defense_seed = self.seed if self.defense_seed is None else self.defense_seed
        self.d_acc = round(self.ours_acc - self.ref_acc, 2)
        self.d_asr = round(self.ours_asr - self.ref_asr, 2)


def key(row: dict[str, Any]) -> tuple[str, ...]:
    """A row's identity; rows written before ``defense_seed`` existed ran with the victim's seed."""
    row = {**row, "defense_seed": row.get("defense_seed") or row["seed"]}
    return tuple(str(row[k]) for k in ("defense", "attack", "seed", "defense_seed", "setting"))


def write_row(path: Path, row: Row) -> None:
    """Add ``row`` to the CSV at ``path``, replacing the row of the same (defense, attack, seed, defense seed,
    setting)."""
    rows = []
    if path.is_file():
        with path.open(newline="") as f:
            rows = [{**r, "defense_seed": r.get("defense_seed") or r["seed"]} for r in csv.DictReader(f)
                    if key(r) != key(asdict(row))]  # fmt: skip
    rows.append({k: v for k, v in asdict(row).items()})
    rows.sort(key=key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
