"""What every distillation method shares: the task, the run loop with checkpoint/resume, and reuse of a
saved set whose configuration matches."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import psutil
import torch
from tqdm.auto import tqdm

from utils.data import Dataset
from utils.paths import cache_dir
from utils.results import atomic_write
from utils.synthetic import SyntheticSet, check_init


@dataclass(frozen=True)
class DistillTask:
    """What to distil: dataset, images per class, initialisation."""

    dataset: str
    ipc: int
    init: str

    def __post_init__(self):
        check_init(self.init)
        if self.ipc < 1:
            raise ValueError(f"ipc must be a positive integer, got {self.ipc}")


class Distiller(Protocol):
    """One method's state: `step` does one outer iteration and returns its loss."""

    def step(self) -> float: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def synthetic(self) -> tuple[torch.Tensor, torch.Tensor, float | None]: ...


def config_hash(config: dict) -> str:
    """Short stable hash of a JSON-able configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tensor_digest(*tensors: torch.Tensor) -> str:
    """Short hash of tensor contents (identifies a training set in cache keys)."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class PeakMemory:
    """Peak memory a block adds (MiB): the CUDA allocator's peak on a GPU; on a CPU, the sampled peak of the
    process's resident memory above its level when the block started (data already loaded is not counted)."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mib = device, 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._stop = threading.Event()
        process = psutil.Process()

        def sample():
            while not self._stop.wait(0.05):
                self.peak_mib = max(self.peak_mib, process.memory_info().rss / 2**20)

        self._start_mib = process.memory_info().rss / 2**20
        self.peak_mib = self._start_mib
        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mib -= self._start_mib


def run_distillation(distiller: Distiller, *, iterations: int, config: dict, data: Dataset,
                     checkpoint_every: int, device: torch.device, desc: str) -> SyntheticSet:
    """Run `iterations` steps, checkpointing so an interrupted run resumes, and return the synthetic set."""
    checkpoint = cache_dir() / "checkpoints" / f"{config_hash(config)}.pt"
    losses: list[float] = []
    done, seconds = 0, 0.0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        distiller.load_state_dict(state["distiller"])
        losses, done, seconds = state["losses"], state["iteration"], state["seconds"]
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        bar = tqdm(range(done, iterations), desc=desc, initial=done, total=iterations, leave=False)
        for it in bar:
            losses.append(distiller.step())
            bar.set_postfix(loss=f"{losses[-1]:.4g}")
            if (it + 1) % checkpoint_every == 0 and it + 1 < iterations:
                state = {"distiller": distiller.state_dict(), "losses": losses, "iteration": it + 1,
                         "seconds": seconds + time.perf_counter() - start}
                atomic_write(checkpoint, lambda p, s=state: torch.save(s, p))
        seconds += time.perf_counter() - start
    images, labels, lr = distiller.synthetic()
    if not torch.isfinite(images).all():
        raise FloatingPointError(f"{desc}: the synthetic images contain non-finite values; nothing was saved")
    result = SyntheticSet(images=images.detach().cpu(), labels=labels.cpu(), dataset=data.name, mean=data.mean,
                          std=data.std, lr=lr, config={**config, "iterations_done": iterations,
                                                       "wall_seconds": seconds, "peak_memory_mib": memory.peak_mib,
                                                       "losses": losses, "device": str(device)})
    checkpoint.unlink(missing_ok=True)
    return result


def distill_or_load(path: str | os.PathLike, build: callable, config: dict) -> tuple[SyntheticSet, bool]:
    """Reuse the set saved at `path` if its configuration equals `config`, else build and save it.

    Returns the set and whether it was reused."""
    path = Path(path)
    if path.exists():
        saved = SyntheticSet.load(path)
        if {k: saved.config.get(k) for k in config} == json.loads(json.dumps(config, default=str)):
            return saved, True
    result = build()
    result.save(path)
    return result, False


def method_config(config) -> dict:
    """A method configuration dataclass as a JSON-able dict."""
    return json.loads(json.dumps(asdict(config), default=str))
