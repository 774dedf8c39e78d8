"""Training and evaluation harness shared by every notebook: seeding, device, precision, train/evaluate,
the distilled-set evaluation protocol, MACs and timing.

`utility.py` holds *how a network is trained and measured*; `utils/` holds everything else (data,
profiles, augmentation, distillation methods, result files, plots, the pipeline).
"""

from __future__ import annotations

import copy
import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from networks import get_network
from utils import compiled
from utils.metrics import classification_metrics
from utils.progress import progress as progress_bar

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("step", "cosine")
Augment = Callable[[torch.Tensor], torch.Tensor]


# cuBLAS needs this before its first use to choose deterministic reductions (no effect on the CPU).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def configure_reproducibility(device: torch.device, precision: str) -> None:
    """Make GPU reruns and resumes repeat: deterministic cuDNN/CUDA kernels (a warning where an op has none) and,
    for 'fp32', true fp32 matmuls and convolutions (no TF32 on Ampere and newer)."""
    fp32 = precision == "fp32"
    torch.backends.cuda.matmul.allow_tf32 = not fp32
    torch.backends.cudnn.allow_tf32 = not fp32
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so that a run repeats."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device(device: str = "auto") -> torch.device:
    """CUDA when available (for 'auto'), else CPU."""
    if device not in DEVICES:
        raise ValueError(f"Unknown device {device!r}; allowed: {', '.join(DEVICES)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but no CUDA GPU is available; use 'auto' or 'cpu'")
    return torch.device(device)


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")   # what decides a CPU's speed and precision here


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """The CPU model and which of `CPU_FLAGS` it has, from /proc/cpuinfo (else the platform's processor name)."""
    model, flags = platform.processor() or "unknown CPU", []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), model)
        present = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
        flags = [flag for flag in CPU_FLAGS if flag in present]
    return model, flags


def hardware_name(device: torch.device) -> str:
    """The one description of the machine, for result metadata and the run stamp: the GPU's name, or the CPU
    model, its flags among `CPU_FLAGS` and the cores this process may use."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model, flags = cpu_model_and_flags()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model} ({', '.join(flags) or 'none of ' + '/'.join(CPU_FLAGS)}), {cores} cores"


def _bf16_native(device: torch.device) -> bool:
    """Whether the hardware computes bf16 natively (emulated bf16, e.g. on plain AVX-512 or a T4, is slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' means bf16 autocast where the hardware computes bf16 natively, else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if _bf16_native(device) else "fp32"
    return precision


@dataclass(frozen=True)
class RunContext:
    """What every unit of a run is computed with: its seed, device and (resolved) precision."""

    seed: int
    device: torch.device
    precision: str

    def __post_init__(self):
        object.__setattr__(self, "device", torch.device(self.device))

    def with_seed(self, seed: int) -> RunContext:
        """The same device and precision with another seed."""
        return replace(self, seed=seed)


@dataclass
class TrainHistory:
    """Per-epoch training loss and (optional) test accuracy, plus training wall time (evaluation excluded)."""

    train_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    train_seconds: float = 0.0


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, precision: str = "fp32") -> torch.Tensor:
    """Logits of `model` for all of `x` (float32, on the CPU), compiled where possible (`utils.compiled`)."""
    device = next(model.parameters()).device
    model.eval()
    rows = min(batch_size, len(x))
    outputs = [compiled.logits(model, x[start:start + batch_size].to(device, non_blocking=True),
                               precision=precision, batch_rows=rows).cpu()
               for start in range(0, len(x), batch_size)]
    return torch.cat(outputs)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024,
             precision: str = "fp32") -> dict[str, float]:
    """Accuracy, balanced accuracy, AUC and loss of `model` on (x, y)."""
    logits = predict(model, x, batch_size, precision)
    metrics = classification_metrics(logits, y.cpu())
    metrics["loss"] = F.cross_entropy(logits, y.cpu()).item()
    return metrics


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float = 0.01,
          batch_size: int = 256, momentum: float = 0.9, weight_decay: float = 5e-4, schedule: str = "step",
          augment: Augment | None = None, test: tuple[torch.Tensor, torch.Tensor] | None = None,
          precision: str = "fp32", progress: bool | str = False) -> TrainHistory:
    """Train `model` in place on in-memory tensors with SGD; evaluate on `test` after each epoch if given.

    `schedule='step'` divides the lr by 10 at half the epochs (the DC evaluation protocol);
    `'cosine'` anneals it to zero per step. `augment` maps a batch to an augmented batch. Each step is compiled
    where possible (`utils.compiled`); the ragged last batch of an epoch is padded with zero-weight rows.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    steps_per_epoch = -(-len(x) // batch_size)
    batch_rows = min(batch_size, len(x))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    if schedule == "step":
        milestone = epochs // 2 * steps_per_epoch
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [milestone] if milestone else [], 0.1)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    history = TrainHistory()
    bar = progress_bar(range(epochs), desc=progress if isinstance(progress, str) else "train", unit="epoch",
                       disable=not progress)
    start = time.perf_counter()
    for _ in bar:
        model.train()
        total, seen = torch.zeros((), device=device), 0
        for idx in torch.randperm(len(x), device=device).split(batch_size):
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb)
            optimizer.zero_grad(set_to_none=True)
            loss = compiled.train_step(model, xb, yb, precision=precision, batch_rows=batch_rows)
            optimizer.step()
            scheduler.step()
            total += loss.detach() * len(idx)
            seen += len(idx)
        history.train_loss.append(total.item() / seen)
        history.train_seconds += time.perf_counter() - start
        if test is not None:
            history.test_accuracy.append(evaluate(model, *test, precision=precision)["accuracy"])
            bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}", acc=f"{history.test_accuracy[-1]:.3f}")
        start = time.perf_counter()
    return history


@dataclass
class SyntheticEvaluation:
    """Test metrics of `n` fresh networks trained on one (synthetic) training set."""

    architecture: str
    runs: list[dict[str, float]]
    train_seconds: list[float]

    def mean(self, metric: str = "accuracy") -> float:
        return float(np.mean([r[metric] for r in self.runs]))

    def std(self, metric: str = "accuracy") -> float:
        return float(np.std([r[metric] for r in self.runs]))

    def summary(self, metric: str = "accuracy") -> str:
        """'mean ± std' in percent."""
        return f"{100 * self.mean(metric):.2f} ± {100 * self.std(metric):.2f}"


def evaluate_training_set(x: torch.Tensor, y: torch.Tensor, test: tuple[torch.Tensor, torch.Tensor], *,
                          channels: int, num_classes: int, im_size: tuple[int, int], architecture: str = "ConvNet",
                          n_models: int = 5, epochs: int = 300, lr: float = 0.01, batch_size: int = 256,
                          augment: Augment | None = None, seed: int = 0, device: str | torch.device = "auto",
                          precision: str = "auto", progress: bool = True,
                          schedule: str = "step") -> SyntheticEvaluation:
    """The distilled-set protocol: train `n_models` fresh networks on (x, y), test each on the real test set.

    SGD (momentum 0.9, weight decay 5e-4), lr divided by 10 at half the epochs (`schedule='cosine'`: annealed, the
    course report's protocol), batch 256; mean ± std over models.
    """
    device = device if isinstance(device, torch.device) else get_device(device)
    precision = resolve_precision(precision, device)
    runs, seconds = [], []
    for k in progress_bar(range(n_models), desc=f"evaluate {architecture}", unit="model", disable=not progress):
        set_seed(seed + k)
        model = get_network(architecture, channels, num_classes, im_size).to(device)
        history = train(model, x.detach(), y, epochs=epochs, lr=lr, batch_size=batch_size, augment=augment,
                        precision=precision, schedule=schedule)
        runs.append(evaluate(model, *test, precision=precision))
        seconds.append(history.train_seconds)
    return SyntheticEvaluation(architecture, runs, seconds)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on one image, counted by flopth on a copy of the model.

    flopth replaces `__call__` on every leaf module class and never restores it; we restore it so that
    later training is not slowed down or broken.
    """
    from flopth import flopth

    replica = copy.deepcopy(model).cpu()
    classes = {type(m) for m in replica.modules()}
    saved = {cls: cls.__dict__.get("__call__") for cls in classes}
    try:
        macs, _ = flopth(replica, in_size=(tuple(input_shape),), bare_number=True)
    finally:
        for cls, call in saved.items():
            if call is None:
                if "__call__" in cls.__dict__:
                    delattr(cls, "__call__")
            else:
                cls.__call__ = call
    return int(macs)


class Timer:
    """Wall-clock timer: `with Timer() as t: ...; t.seconds`."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
