"""What every distillation method shares: the task, the run loop with checkpoint/resume, and reuse of a
saved set whose configuration matches."""

from __future__ import annotations

import copy
import ctypes
import json
import numbers
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import psutil
import torch

from utility import RunContext
from utils import ledger
from utils.augment import DSA, strategy_for
from utils.data import Dataset
from utils.digest import config_hash, tensor_digest, versioned
from utils.paths import CacheFormatError, cache_dir, read_cache, require, write_cache
from utils.progress import progress
from utils.synthetic import SyntheticSet, check_init, initial_images

SYNTHETIC = "synthetic"   # the unit records' kind of a distilled set


@dataclass(frozen=True)
class DistillTask:
    """What to distil: dataset, images per class, initialisation."""

    dataset: str
    ipc: int
    init: str

    def __post_init__(self):
        check_init(self.init)
        if isinstance(self.ipc, bool) or not isinstance(self.ipc, numbers.Integral):
            raise TypeError(f"ipc must be a positive integer (images per class), got {self.ipc!r} of type "
                            f"{type(self.ipc).__name__}")
        if self.ipc < 1:
            raise ValueError(f"ipc must be a positive integer (images per class), got {self.ipc}")
        object.__setattr__(self, "ipc", int(self.ipc))


def check_positive_ints(config, *names: str) -> None:
    """Raise a ValueError naming the first of `names` that is not a positive integer on `config`."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class Distiller(Protocol):
    """One method's state: `step` does one outer iteration and returns its loss."""

    def step(self) -> float: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def synthetic(self) -> tuple[torch.Tensor, torch.Tensor, float | None]: ...


class SyntheticImages:
    """What every distiller shares: learnable synthetic images with their SGD optimiser, the sampling and DSA
    generators, and a snapshot of all of it so an interrupted run resumes exactly."""

    def __init__(self, data: Dataset, task: DistillTask, config, context: RunContext, *, lr_img: float,
                 momentum: float):
        seed, device = context.seed, context.device
        self.data, self.task, self.config = data, task, config
        self.device, self.precision = device, context.precision
        self.generator = torch.Generator().manual_seed(seed)
        # index draws happen where the tensors live, so a GPU step never waits for a host-to-device copy
        self.device_generator = torch.Generator(device=device).manual_seed(seed)
        images, labels = initial_images(data, task.ipc, task.init, self.generator)
        self.images, self.labels = images.to(device).requires_grad_(True), labels.to(device)
        self.optimizer = torch.optim.SGD([self.images], lr=lr_img, momentum=momentum)
        self.dsa = DSA(strategy_for(data.name) if config.dsa else "none", seed=seed, device=device)

    def permutation(self, n: int) -> torch.Tensor:
        """A random permutation of 0 .. n − 1 drawn on the run's device."""
        return torch.randperm(n, generator=self.device_generator, device=self.device)

    def learnables(self) -> dict[str, torch.Tensor]:
        """Tensors optimised in place, by name (a method with more, like MTT's learning rate, adds them)."""
        return {"images": self.images}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers whose state a resumed run needs, by name."""
        return {"optimizer": self.optimizer}

    def state_dict(self) -> dict:
        """A snapshot (copies, not views) of everything a resumed run needs."""
        return copy.deepcopy({**{name: t.detach().cpu() for name, t in self.learnables().items()},
                              **{name: o.state_dict() for name, o in self.optimizers().items()},
                              "generator": self.generator.get_state(),
                              "device_generator": self.device_generator.get_state(), "dsa": self.dsa.get_state(),
                              "torch_rng": torch.get_rng_state()})

    def load_state_dict(self, state: dict) -> None:
        """Restore a snapshot taken by `state_dict`."""
        with torch.no_grad():
            for name, tensor in self.learnables().items():
                tensor.copy_(state[name].to(self.device))
        for name, optimizer in self.optimizers().items():
            optimizer.load_state_dict(state[name])
        self.generator.set_state(state["generator"])
        self.device_generator.set_state(state["device_generator"])
        self.dsa.set_state(state["dsa"])
        torch.set_rng_state(state["torch_rng"])

    def update_images(self, loss: torch.Tensor) -> None:
        """One step of every optimiser (the images', and any other learnable's) down the gradient of `loss`."""
        for optimizer in self.optimizers().values():
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in self.optimizers().values():
            optimizer.step()

    def synthetic(self) -> tuple[torch.Tensor, torch.Tensor, float | None]:
        """Images, labels and (for methods that learn one) the learning rate to train on them with."""
        return self.images.detach(), self.labels, None


class PeakMemory:
    """Peak memory a block adds (MiB): the CUDA allocator's peak on a GPU; on a CPU, the peak of the process's
    resident memory above its level when the block started (data already loaded is not counted). On Linux the
    kernel's exact high-water mark is reset and read back; elsewhere resident memory is sampled every 50 ms.
    Memory the C allocator kept from earlier work is first handed back to the system (glibc `malloc_trim`), so
    that the block's own allocations are counted again when an identical block runs a second time."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mib = device, 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        _release_freed_memory()
        self._start_mib = _resident_mib()
        self._kernel_peak = _reset_kernel_peak()
        if not self._kernel_peak:
            self._stop = threading.Event()
            self._sampled_mib = self._start_mib
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self._sampled_mib = max(self._sampled_mib, _resident_mib())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        if self._kernel_peak:
            peak = _kernel_peak_mib()
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._sampled_mib, _resident_mib())
        self.peak_mib = max(0.0, peak - self._start_mib)


def _release_freed_memory() -> None:
    """Return freed heap memory to the system (glibc only; elsewhere nothing to do)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _resident_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _reset_kernel_peak() -> bool:
    """Reset Linux's resident-memory high-water mark (VmHWM) to the current level; False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _kernel_peak_mib() > 0
    except OSError:
        return False


def _kernel_peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def checkpoint_path(config: dict) -> Path:
    """Where the checkpoint of the distillation with configuration `config` is kept (keyed with torch's version)."""
    return cache_dir() / "checkpoints" / f"{config_hash(versioned(config))}.pt"


def run_distillation(distiller: Distiller, *, iterations: int, config: dict, data: Dataset,
                     checkpoint_every: int, device: torch.device, desc: str,
                     snapshots_at: tuple[int, ...] = ()) -> SyntheticSet:
    """Run `iterations` steps, checkpointing so an interrupted run resumes, and return the synthetic set; the
    images after each iteration in `snapshots_at` are kept too (for accuracy-vs-iterations curves)."""
    checkpoint = checkpoint_path(config)
    losses: list[float] = []
    snapshots: dict[int, dict] = {}
    done, seconds = 0, 0.0
    state = read_cache(checkpoint, lambda p: _resume(distiller, p, iterations))
    if state is not None:
        losses, done, seconds = state["losses"], state["iteration"], state["seconds"]
        snapshots = state.get("snapshots", {})
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        bar = progress(range(done, iterations), desc=desc, initial=done, total=iterations, unit="iteration")
        for it in bar:
            losses.append(distiller.step())
            bar.set_postfix(loss=f"{losses[-1]:.4g}")
            if it + 1 in snapshots_at and it + 1 < iterations:
                images, _, lr = distiller.synthetic()
                snapshots[it + 1] = {"images": images.detach().cpu().clone(), "lr": lr}
            if (it + 1) % checkpoint_every == 0 and it + 1 < iterations:
                state = {"distiller": distiller.state_dict(), "losses": losses, "iteration": it + 1,
                         "seconds": seconds + time.perf_counter() - start, "snapshots": snapshots}
                write_cache(checkpoint, lambda p, s=state: torch.save(s, p))
        seconds += time.perf_counter() - start
    images, labels, lr = distiller.synthetic()
    if not torch.isfinite(images).all():
        raise FloatingPointError(f"{desc}: the synthetic images contain non-finite values; nothing was saved")
    result = SyntheticSet(images=images.detach().cpu(), labels=labels.cpu(), dataset=data.name, mean=data.mean,
                          std=data.std, lr=lr, config={**config, "iterations_done": iterations,
                                                       "wall_seconds": seconds, "peak_memory_mib": memory.peak_mib,
                                                       "losses": losses, "device": str(device)},
                          snapshots=dict(sorted(snapshots.items())))
    checkpoint.unlink(missing_ok=True)
    return result


def _resume(distiller: Distiller, path: Path, iterations: int) -> dict:
    """Restore `distiller` from the checkpoint at `path` and return the checkpoint; a checkpoint of another layout
    (keys, types, non-finite images, a state the distiller refuses) raises, leaving `distiller` as it was."""
    state = require(torch.load(path, map_location="cpu", weights_only=True),
                    {"distiller": dict, "losses": list, "iteration": int, "seconds": float, "snapshots": dict})
    if not 0 < state["iteration"] < iterations or len(state["losses"]) != state["iteration"]:
        raise CacheFormatError(f"it holds iteration {state['iteration']} with {len(state['losses'])} losses; "
                               f"expected one loss per iteration, fewer than {iterations}")
    for name, value in state["distiller"].items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            raise CacheFormatError(f"its {name!r} holds non-finite values")
    before = distiller.state_dict()
    try:
        distiller.load_state_dict(state["distiller"])
    except Exception:
        distiller.load_state_dict(before)
        raise
    return state


def distill_or_load(path: str | os.PathLike, build: Callable[[], SyntheticSet],
                    config: dict) -> tuple[SyntheticSet, bool]:
    """Reuse the set saved at `path` if its configuration equals `config`, else build and save it (a saved set
    that cannot be read is named in a warning, moved aside to `<name>.corrupt` and rebuilt).

    Returns the set and whether it was reused."""
    saved = load_matching(path, config)
    if saved is not None:
        return saved, True
    result = build()
    save_set(path, config, result)
    return result, False


def save_set(path: str | os.PathLike, config: dict, synthetic: SyntheticSet) -> None:
    """Save a distilled set and record it as a unit of the results (its images' digest, its distillation time)."""
    synthetic.save(path)
    ledger.record(SYNTHETIC, config, {"file": Path(path).name, "images": _images_digest(synthetic)},
                  synthetic.config.get("wall_seconds", 0.0))


def load_matching(path: str | os.PathLike, config: dict) -> SyntheticSet | None:
    """The set saved at `path` if its configuration equals `config` (None if missing, unreadable or different;
    one whose images do not have the shape its configuration gives counts as unreadable). With an open ledger
    (a notebook's run) the set must also have a unit record at this code digest holding its images' digest; then
    the entries saying where it ran (precision, device class) are not compared, so a set made on any machine is
    reused."""
    if ledger.current() is None:
        return read_cache(Path(path), lambda p: _matching(SyntheticSet.load(p), config))
    unit = ledger.recorded(SYNTHETIC, config)
    if unit is None:
        return None
    saved = read_cache(Path(path), lambda p: _matching(SyntheticSet.load(p), ledger.portable(config)))
    return saved if saved is not None and _images_digest(saved) == unit["value"]["images"] else None


def _images_digest(synthetic: SyntheticSet) -> str:
    return tensor_digest(synthetic.images.detach().cpu().float(), synthetic.labels.cpu().long())


def _matching(saved: SyntheticSet, config: dict) -> SyntheticSet | None:
    """`saved` if made with `config` (None if not); a CacheFormatError if its images contradict that config."""
    if {k: saved.config.get(k) for k in config} != json.loads(json.dumps(config, default=str)):
        return None
    counts = torch.bincount(saved.labels).tolist()
    if "ipc" in config and set(counts) != {config["ipc"]}:
        raise CacheFormatError(f"it holds {counts} images per class; its configuration says {config['ipc']}")
    if "im_size" in config and list(saved.images.shape[2:]) != list(config["im_size"]):
        raise CacheFormatError(f"its images are {tuple(saved.images.shape[2:])}; its configuration says "
                               f"{tuple(config['im_size'])}")
    return saved


def method_config(config) -> dict:
    """A method configuration dataclass as a JSON-able dict."""
    return json.loads(json.dumps(asdict(config), default=str))
