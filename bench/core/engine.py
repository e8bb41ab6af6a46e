"""The one training engine, used by attacks (victim training) and defenses (fine-tuning).

Data stays in memory as uint8 tensors on the training device; each step gathers a batch, converts it
to float in [0, 1], lets the attack transform it (in-batch poisoning, generators trained jointly with the
classifier), applies batched augmentation and takes an SGD step. No DataLoader, no per-sample PIL work.
channels_last everywhere; bf16 autocast on CUDA, and on the CPU too under ``precision=bf16`` (see
``precision``).
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, TypeVar, get_args

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from bench.core.errors import ConfigError
from bench.core.images import ImageSet
from bench.core.schema import Positive, PositiveInt, Range, UnitInterval

log = logging.getLogger(__name__)

# (model, batch, labels) -> scalar training loss; default cross-entropy of model(batch).
Loss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class TrainingHooks:
    """Where an attack acts inside victim training; every hook defaults to doing nothing.

    ``batch_hook`` sees each float batch before augmentation and may return tensors that carry gradients
    into the attack's own networks (Dynamic, IA): the classifier's backward then fills their gradients too,
    and ``after_step`` steps the attack's optimiser. ``after_epoch`` lets an attack refresh what it derives
    from the model being trained (DFST's detoxification).
    """

    def batch_hook(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def augmented_batch_hook(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sees each float batch after augmentation (in-batch poisoning stamps its trigger here, so crop
        and flip never move it)."""
        return x, y

    def after_step(self) -> None:
        """Called after each optimiser step of the classifier."""

    def after_epoch(self, model: nn.Module, epoch: int) -> None:
        """Called after each epoch (0-based), with the model in train mode."""

    def training_state(self) -> dict[str, Any]:
        """What training has changed in the hooks (weights, random generators, optimisers), saved with a
        resumable training's checkpoint; stateless hooks have none."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore what ``training_state`` saved, so a resumed training goes on exactly."""


class Perturb(Protocol):
    """Replaces each augmented batch just before the step, e.g. with adversarial examples; what it draws
    at random is saved with a resumable training's checkpoint."""

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    def training_state(self) -> dict[str, Any]: ...

    def load_training_state(self, state: dict[str, Any]) -> None: ...


class Checkpoint(Protocol):
    """Where a long training keeps its state so a killed run resumes (``bench.run.cache.Checkpoint``)."""

    def load(self) -> dict[str, Any] | None:
        """The state last saved, or None on a fresh start."""
        ...

    def due(self) -> bool:
        """Whether enough time has passed since the last save to save again."""
        ...

    def save(self, state: dict[str, Any]) -> None: ...

    @property
    def seconds(self) -> float:
        """Training seconds of every process so far, this one's included."""
        ...


Schedule = Literal["cosine", "step", "constant", "cyclic"]
Optimizer = Literal["sgd", "adam"]
T = TypeVar("T")


@dataclass
class Recipe:
    """A supervised training recipe: SGD with momentum (or Adam), a learning-rate schedule, crop/flip
    augmentation."""

    epochs: int = 100
    batch_size: PositiveInt = 128
    lr: Positive = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Schedule = "cosine"
    crop_pad: int = 4
    hflip: bool = True
    label_smoothing: Annotated[float, Range(0, 1, high_closed=False)] = 0.0
    optimizer: Optimizer = "sgd"  # sgd (with momentum) | adam (momentum unused)
    nesterov: bool = False
    milestones: tuple[int, ...] = ()  # schedule=step: epochs at which the lr drops x0.1 (default 50%, 75%)
    # sharpness-aware minimisation (FT-SAM): each step first climbs to w + e, e = rho g / ||g|| (adaptive:
    # e = rho |w|^2 g / || |w| g ||), takes the gradient there with batch-norm statistics frozen, then
    # steps from w; 0 = a plain step
    sam_rho: float = 0.0
    sam_adaptive: bool = False
    # schedule=cyclic (Super-FT's two phases of triangular cycles): the lr climbs linearly from ``lr`` to a
    # peak over ``cycle_steps`` iterations and back over as many, again and again; the peak is
    # ``cycle_peaks[0]`` during the first ``cycle_switch`` share of the epochs, ``cycle_peaks[1]`` after
    cycle_steps: PositiveInt = 10
    cycle_peaks: tuple[float, float] = (0.1, 0.01)
    cycle_switch: UnitInterval = 0.4


def sharpness_aware_gradient(
    model: nn.Module, loss: Callable[[], torch.Tensor], recipe: Recipe, device: torch.device,
    opt: torch.optim.Optimizer,
) -> None:  # fmt: skip
    """Replace the gradients at w (already computed) by those at w + e (SAM; adaptive SAM scales by |w|),
    with every batch-norm's running statistics left as they were, and return the weights to w."""
    params = [p for p in model.parameters() if p.grad is not None]
    with torch.no_grad():
        scaled = [(p.abs() * p.grad if recipe.sam_adaptive else p.grad) for p in params]
        norm = torch.linalg.vector_norm(torch.stack([s.norm() for s in scaled]))
        climbs = [p.grad * (recipe.sam_rho / (norm + 1e-12)) * (p.pow(2) if recipe.sam_adaptive else 1.0)
                  for p in params]  # fmt: skip
        for p, e in zip(params, climbs, strict=True):
            p.add_(e)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0  # the second pass normalises by its batch but leaves the running statistics
    opt.zero_grad(set_to_none=True)
    with autocast(device):
        second = loss()
    second.backward()
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    with torch.no_grad():
        for p, e in zip(params, climbs, strict=True):
            p.sub_(e)


def augment(x: torch.Tensor, crop_pad: int, hflip: bool, gen: torch.Generator | None = None) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per sample, as one batched op."""
    n, _, h, w = x.shape
    if crop_pad > 0:
        padded = F.pad(x, (crop_pad,) * 4)
        dy = torch.randint(0, 2 * crop_pad + 1, (n,), generator=gen).to(x.device)
        dx = torch.randint(0, 2 * crop_pad + 1, (n,), generator=gen).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    if hflip:
        flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)[:, None, None, None]
        x = torch.where(flip, x.flip(3), x)
    return x


LOG_EVERY_S = 60.0  # off a terminal, a long phase's progress line at most this often


class LogLines:
    """A file for tqdm that hands its status line to the log when the phase starts and then at most every
    ``LOG_EVERY_S`` seconds (off a terminal, or with ``progress: false``: a SLURM, nohup or CI log shows
    each long phase moving; tqdm itself also redraws on every ``set_postfix``)."""

    def __init__(self) -> None:
        self.last: float | None = None

    def write(self, text: str) -> None:
        line, now = text.strip("\r\n "), time.monotonic()
        if line and (self.last is None or now - self.last >= LOG_EVERY_S):
            self.last = now
            log.info("%s", line)

    def flush(self) -> None:
        pass


def progress_bar(
    iterable: Iterable[T] | None = None, *, desc: str, enabled: bool, total: int | None = None
) -> tqdm:
    """A transient tqdm bar on a terminal when ``enabled``; otherwise the same progress as a log line at
    most every ``LOG_EVERY_S`` seconds (``bar.logged`` is then true)."""
    if enabled and sys.stderr.isatty():
        bar = tqdm(iterable, total=total, desc=desc, leave=False)
        bar.logged = False
        return bar
    bar = tqdm(iterable, total=total, desc=desc, file=LogLines(), mininterval=LOG_EVERY_S,
               maxinterval=LOG_EVERY_S, ascii=True, ncols=100, leave=False)  # fmt: skip
    bar.logged = True
    return bar


Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS = get_args(Precision)
# The precision of the work running now: set for a block by ``precision`` (a cell's whole run), never for
# the process, so one cell's setting cannot leak into the next one a process runs.
_PRECISION: ContextVar[str] = ContextVar("precision", default="auto")


@contextmanager
def precision(name: str) -> Iterator[None]:
    """Train and evaluate at numeric precision ``name`` inside the block (a cell's ``precision`` key).

    ``auto``: bf16 autocast on CUDA, fp32 on the CPU (what every record before this key ran with);
    ``bf16``: bf16 autocast on every device (on a CPU with AVX-512 BF16 / AMX, measured about 1.9x faster
    training; elsewhere emulated and slow); ``fp32``: no autocast anywhere.
    """
    if name not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {name!r}")
    token = _PRECISION.set(name)
    try:
        yield
    finally:
        _PRECISION.reset(token)


def autocast(device: torch.device, enabled: bool = True) -> torch.autocast:
    """bf16 autocast where the run's precision asks for it; ``enabled=False`` forces float32 (a
    computation whose answer bf16's resolution would change, e.g. UNIT's bounds)."""
    now = _PRECISION.get()
    on = enabled and (now == "bf16" or (now == "auto" and device.type == "cuda"))
    if on and device.type == "cpu" and not cpu_has_bf16():
        warn_emulated_bf16()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 itself (AVX-512 BF16 or AMX); elsewhere PyTorch emulates it."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


@functools.cache
def warn_emulated_bf16() -> None:
    """Once a process: bf16 on a CPU without it is many times slower than float32 (docs/running.md)."""
    log.warning(
        "precision=bf16 on a CPU without AVX-512 BF16 or AMX (%s): PyTorch emulates bf16 here, many times "
        "slower than float32 (about 13x for a cpu_cifar training step, measured on an AVX2 AMD EPYC); "
        "precision=fp32 runs at this CPU's full speed, as another cell (the precision is part of the "
        "victim's id)",
        torch.backends.cpu.get_cpu_capability(),
    )


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to ``device`` in channels_last layout (faster convolutions on CUDA and, measured, on CPU)."""
    return model.to(device, memory_format=torch.channels_last)


def make_optimizer(
    model: nn.Module, recipe: Recipe, steps: int, steps_per_epoch: int = 1
) -> tuple[torch.optim.Optimizer, object]:
    params = [p for p in model.parameters() if p.requires_grad]
    wd = recipe.weight_decay
    if recipe.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=recipe.lr, weight_decay=wd)
    else:
        opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=wd,
                              nesterov=recipe.nesterov)  # fmt: skip
    if recipe.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    elif recipe.schedule == "step":  # x0.1 at the milestone epochs, else at 50% and 75% of training
        drops = [m * steps_per_epoch for m in recipe.milestones] or [steps // 2, steps * 3 // 4]
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, drops, 0.1)
    elif recipe.schedule == "cyclic":
        switch = round(recipe.cycle_switch * steps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: cyclic_lr(step, recipe, switch) / recipe.lr
        )
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def cyclic_lr(step: int, recipe: Recipe, switch: int) -> float:
    """The lr of ``schedule=cyclic`` at iteration ``step``: triangular cycles between ``recipe.lr`` and
    the phase's peak (the first peak before iteration ``switch``, the second after)."""
    peak = recipe.cycle_peaks[0] if step < switch else recipe.cycle_peaks[1]
    half = recipe.cycle_steps
    position = step % (2 * half)
    rise = position if position < half else 2 * half - position
    return recipe.lr + (peak - recipe.lr) * rise / half


def fit(
    model: nn.Module,
    data: ImageSet,
    recipe: Recipe,
    device: torch.device,
    hooks: TrainingHooks | None = None,
    seed: int = 0,
    perturb: Perturb | None = None,
    desc: str = "train",
    progress: bool = True,
    loss_fn: Loss | None = None,
    until: Callable[[nn.Module], bool] | None = None,
    checkpoint: Checkpoint | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place; returns seconds, images/s, the last epoch's mean loss, the epochs run and
    every epoch's mean loss and training accuracy (``loss_per_epoch``, ``acc_per_epoch``: the curves the
    record keeps and the W&B logger draws; the accuracy is of the model's output on each batch as trained,
    poisoned images and their labels included).

    ``hooks`` (in-batch poisoning, see ``TrainingHooks``) see each float batch before and after augmentation;
    ``perturb`` (adversarial training) replaces the augmented batch just before the step; ``loss_fn`` replaces
    cross-entropy with the recipe's label smoothing (distillation, unlearning objectives); ``until`` (a
    stopping rule, e.g. SEAM's accuracy targets) is asked after every epoch, with the model in eval mode,
    and ends training early when it says so. ``checkpoint``: the training saves its whole state there at
    the end of an epoch when a save is due, and a training that finds a save goes on from it to the answer
    of an uninterrupted run (``seconds`` then counts every process's training time).
    """
    if loss_fn is None:
        smoothing = recipe.label_smoothing

        def loss_fn(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(m(xb), yb, label_smoothing=smoothing)

    model = prepare_model(model, device)
    x, y = data.x.to(device), data.y.to(device)
    n = len(y)
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    opt, sched = make_optimizer(model, recipe, recipe.epochs * steps_per_epoch, steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    start, seen, loss_sum = time.perf_counter(), 0, torch.zeros(())
    bar = progress_bar(total=recipe.epochs * steps_per_epoch, desc=desc, enabled=progress)
    hooks = hooks or TrainingHooks()
    epochs_run, history, accuracy = 0, [], []
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["schedule"])
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        hooks.load_training_state(saved["hooks"])
        if perturb is not None:
            perturb.load_training_state(saved["perturb"])
        epochs_run, history, accuracy = saved["epochs"], saved["loss_per_epoch"], saved["acc_per_epoch"]
        seen = saved["seen"]
        bar.update(epochs_run * steps_per_epoch)
    seen_before = seen  # images of earlier processes (a resumed training): not this process's speed
    outputs: list[torch.Tensor] = []  # the model's output on the batch (its top-level call), for accuracy
    handle = model.register_forward_hook(
        lambda m, i, out: outputs.append(out.detach()) if isinstance(out, torch.Tensor) else None
    )
    for epoch in range(epochs_run, recipe.epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device)
        for i in range(0, n, recipe.batch_size):
            idx = perm[i : i + recipe.batch_size]
            xb, yb = x[idx].float().div_(255), y[idx]
            xb, yb = hooks.batch_hook(model, xb, yb)
            xb = augment(xb, recipe.crop_pad, recipe.hflip, gen)
            xb, yb = hooks.augmented_batch_hook(xb, yb)
            xb = xb.contiguous(memory_format=torch.channels_last)
            if perturb is not None:
                xb = perturb(model, xb, yb)
            outputs.clear()
            with autocast(device):
                loss = loss_fn(model, xb, yb)
            if outputs and outputs[0].dim() == 2 and yb.dim() == 1 and len(outputs[0]) == len(yb):
                correct += (outputs[0].argmax(1) == yb).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.sam_rho > 0:
                second_loss = functools.partial(loss_fn, model, xb, yb)
                sharpness_aware_gradient(model, second_loss, recipe, device, opt)
            opt.step()
            sched.step()
            hooks.after_step()
            loss_sum += loss.detach().float() * len(idx)
            seen += len(idx)
            bar.update()
        history.append(round(loss_sum.item() / n, 5))
        accuracy.append(round(100 * correct.item() / n, 3))
        bar.set_postfix(loss=f"{history[-1]:.3f}")
        if bar.logged:  # no bar on a terminal (a SLURM, nohup or CI log): one line per epoch
            log.info("%s epoch %d/%d: loss %.4f, %.0f images/s", desc, epoch + 1, recipe.epochs,
                     history[-1], (seen - seen_before) / (time.perf_counter() - start))  # fmt: skip
        hooks.after_epoch(model, epoch)
        epochs_run = epoch + 1
        if until is not None and until(model.eval()):
            break
        model.train()
        if checkpoint is not None and epochs_run < recipe.epochs and checkpoint.due():
            checkpoint.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                             "schedule": sched.state_dict(), "generator": gen.get_state(),
                             "torch_rng": torch.get_rng_state(), "hooks": hooks.training_state(),
                             "perturb": perturb.training_state() if perturb is not None else {},
                             "epochs": epochs_run, "loss_per_epoch": history, "acc_per_epoch": accuracy,
                             "seen": seen})  # fmt: skip
    bar.close()
    handle.remove()
    model.eval()
    seconds = checkpoint.seconds if checkpoint is not None else time.perf_counter() - start
    return {
        "seconds": seconds,
        "images_per_s": seen / max(seconds, 1e-9),
        "loss": loss_sum.item() / max(n, 1),
        "epochs": epochs_run,
        "loss_per_epoch": history,
        "acc_per_epoch": accuracy,
    }
